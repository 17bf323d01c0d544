# Sourced by setup.sh and sanitize.sh. cmake_generator DIR prints "-G Ninja" for a new build folder when
# ninja is installed: Ninja starts each library's compilations as soon as the precompiled header exists,
# where Make first waits for the libraries it links to be built, which leaves a core idle along the
# dependency chain (docs/BENCHMARKS.md, "Build and test times"). An existing folder keeps its generator.
cmake_generator() {
  [[ ! -f $1/CMakeCache.txt ]] && command -v ninja >/dev/null 2>&1 && echo "-G Ninja"
  return 0
}
