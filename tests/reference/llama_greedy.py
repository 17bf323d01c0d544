#!/usr/bin/python3
"""Independent reference for spin-generate's greedy decoding: the plain PyTorch Llama forward of
llama_forward.py, rerun on the whole sequence for every new token, argmax of the last position.

usage: llama_greedy.py MODEL_DIR PROMPT_IDS N [f64|f32]
PROMPT_IDS is comma-separated ("1,2,3"). Prints {"ids": [the N new ids]} as JSON.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_forward import forward, read_safetensors  # noqa: E402


def main():
    model_dir, prompt, n = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], int(sys.argv[3])
    dtype = {"f64": torch.float64, "f32": torch.float32}[sys.argv[4] if len(sys.argv) > 4 else "f64"]
    cfg = json.load(open(f"{model_dir}/config.json"))
    W = {k: v.to(dtype) for k, v in read_safetensors(f"{model_dir}/model.safetensors").items()}
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = forward(cfg, W, torch.tensor([ids], dtype=torch.int64), dtype)  # [1, T, vocab]
            ids.append(int(torch.argmax(logits[0, -1]).item()))
    print(json.dumps({"ids": ids[len(prompt):]}))


if __name__ == "__main__":
    main()
