// Resource pre-checks: free disk and available memory are read, and a request beyond them is a
// one-line error naming the path (or the job) and both sizes.
#include <gtest/gtest.h>

#include "src/base/check.h"
#include "src/io/resources.h"
#include "tests/test_util.h"

using namespace spin;

TEST(Resources, FreeDiskOfAPathNotYetCreated) {
  auto dir = test::scratch("resources");
  const uint64_t free = free_disk_bytes(dir / "not" / "yet" / "there");
  EXPECT_GT(free, 0u);
  EXPECT_EQ(free / (1 << 20), free_disk_bytes(dir) / (1 << 20));
  EXPECT_NO_THROW(require_disk(dir / "out", 1 << 20, "test export"));
}

TEST(Resources, TooLargeExportIsAOneLineError) {
  auto dir = test::scratch("resources_disk");
  try {
    require_disk(dir / "out", 1ull << 60, "spintrain: the export");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find((dir / "out").string()), std::string::npos) << m;
    EXPECT_NE(m.find("needs about 1073741824.00 GiB"), std::string::npos) << m;
    EXPECT_NE(m.find("is free on " + dir.string()), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos);
  }
}

TEST(Resources, MemoryBeyondAvailableIsAnError) {
  const uint64_t avail = available_memory_bytes();
  ASSERT_GT(avail, 0u) << "/proc/meminfo unreadable";
  EXPECT_NO_THROW(require_memory(1 << 20, "test job"));
  try {
    require_memory(avail + (1ull << 40), "spintrain (rank 0)");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("spintrain (rank 0) needs about"), std::string::npos) << e.what();
  }
}
