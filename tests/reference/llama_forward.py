#!/usr/bin/python3
"""Independent reference for the C++ forward: a plain PyTorch Llama written from the HF definition.

usage: llama_forward.py MODEL_DIR IDS_AND_LOGITS.safetensors TOLERANCE [f64|f32]
Reads tensors "ids" [B, T] (int64) and "logits" [B, T, V] (from the C++ forward) from the second
file, recomputes the logits here in float64 (default) or float32 (weights, activations and the RoPE
tables in float32, as HF transformers computes them) and exits 1 if max |diff| > TOLERANCE.
Prints: max_abs_diff=<x> nll=<mean next-token NLL of the reference>.
"""
import json
import struct
import sys

import numpy as np
import torch

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        if e["dtype"] == "BF16":
            raw = np.frombuffer(data[b:end], dtype=np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data[b:end], dtype=DTYPES[e["dtype"]])
        out[name] = torch.from_numpy(arr.copy().reshape(e["shape"]))
    return out


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def forward(cfg, W, ids, dtype):
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", H // nh)
    eps = cfg["rms_norm_eps"]
    B, T = ids.shape
    inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2, dtype=dtype) / hd))
    ang = torch.arange(T, dtype=dtype)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    # Tied embeddings may be stored as either half (tinystories656k keeps only lm_head), as transformers loads them.
    tied = cfg.get("tie_word_embeddings", False)
    embed = W["model.embed_tokens.weight"] if "model.embed_tokens.weight" in W or not tied else W["lm_head.weight"]
    x = embed[ids]
    mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(B, T, nh, hd).transpose(1, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5 + mask, -1)
        o = (att @ v).transpose(1, 2).reshape(B, T, nh * hd)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = torch.nn.functional.silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)
        x = x + g @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    lm = W["lm_head.weight"] if "lm_head.weight" in W else embed
    return x @ lm.T


def main():
    model_dir, io_path, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    dtype = {"f64": torch.float64, "f32": torch.float32}[sys.argv[4] if len(sys.argv) > 4 else "f64"]
    cfg = json.load(open(f"{model_dir}/config.json"))
    W = {k: v.to(dtype) for k, v in read_safetensors(f"{model_dir}/model.safetensors").items()}
    io = read_safetensors(io_path)
    ids, logits = io["ids"].long(), io["logits"].double()
    with torch.no_grad():
        ref = forward(cfg, W, ids, dtype).double()
    diff = (ref - logits).abs().max().item()
    nll = torch.nn.functional.cross_entropy(ref[:, :-1].reshape(-1, ref.shape[-1]), ids[:, 1:].reshape(-1)).item()
    print(f"max_abs_diff={diff:.3e} nll={nll:.6f}")
    sys.exit(0 if diff <= tol else 1)


if __name__ == "__main__":
    main()
