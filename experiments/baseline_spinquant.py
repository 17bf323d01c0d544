#!/usr/bin/python3
"""Eager PyTorch baseline of one SpinQuant training step, the way the official SpinQuant code does it.

Every linear rotates its frozen weight in float64 on every forward (W·R1, R1ᵀ·W, per-head R2), casts it back
to the training dtype and fake-quantizes it (RTN, per output row, symmetric, straight-through); embeddings and
lm_head are rotated by R1 in float64 too and stay float. When the settings ask for them, activations are
fake-quantized per token at the inputs of q/k/v, o_proj, gate/up and down_proj, K and V per head, and the
online Hadamards R3 (q and k after RoPE) and R4 (down_proj's input) are dense matmuls with the matrices
spin-bench writes ("H3", "H4"; down_proj's weight already holds R4's other half). Loss: next-token
cross-entropy. R1/R2 are float32
leaves stepped by Cayley SGD with momentum (same update as optim/cayley_sgd.cpp: tangent momentum, step
capped by 2q/||W||_1, 5 fixed-point iterations, QR when the orthogonality error drifts past 64 eps).

Input (written by spin-bench): a safetensors file with the folded frozen weights ("embed_tokens", "norm",
"lm_head", "layers.<i>.<q_proj|...|down_proj|input_layernorm|post_attention_layernorm>"), "R1", "layers.<i>.R2"
(float64), "ids" [batch, seq] int64 and optionally "H3"/"H4" (float64); metadata "config" (HF config.json)
and "settings" (steps, lr, momentum, weight/act/key/value {bits, asym}, r3, r4, threads, dtype, device).
Output: one JSON object on stdout: losses, step_seconds, forward/backward/optimizer seconds per step,
peak_rss_bytes.

    /usr/bin/python3 experiments/baseline_spinquant.py --input bench.safetensors
"""
import argparse
import json
import math
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    """Returns ({name: CPU tensor}, metadata dict)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(data, dtype=DTYPES[info["dtype"]], count=(e - b) // np.dtype(DTYPES[info["dtype"]]).itemsize, offset=b)
        out[name] = torch.from_numpy(arr.reshape(info["shape"]))
    return out, meta


def fake_quant(w, bits):
    """RTN per output row, symmetric, quantize-dequantize in float32; straight-through gradient."""
    qmax = 2.0 ** (bits - 1) - 1
    with torch.no_grad():
        xg = w.detach().float()
        scale = (xg.abs().amax(-1, keepdim=True) / qmax).clamp_min(1e-8)
        deq = (torch.clamp(torch.round(xg / scale), -qmax - 1, qmax) * scale).to(w.dtype)
    return w + (deq - w.detach())


def fake_quant_rows(x, bits, asym):
    """RTN of every row (last dim) of an activation, as spintrain's per-token quantizer: float32 statistics,
    asymmetric over [min(x, 0), max(x, 0)] or symmetric over max|x|; straight-through gradient."""
    if bits >= 16:
        return x
    with torch.no_grad():
        xf = x.detach().float()
        if asym:
            qmax = 2.0 ** bits - 1
            lo, hi = xf.amin(-1, keepdim=True).clamp_max(0), xf.amax(-1, keepdim=True).clamp_min(0)
            scale = ((hi - lo) / qmax).clamp_min(1e-8)
            zero = torch.round(-lo / scale)
            deq = (torch.clamp(torch.round(xf / scale) + zero, 0, qmax) - zero) * scale
        else:
            qmax = 2.0 ** (bits - 1) - 1
            scale = (xf.abs().amax(-1, keepdim=True) / qmax).clamp_min(1e-8)
            deq = torch.clamp(torch.round(xf / scale), -qmax - 1, qmax) * scale
    return x + (deq.to(x.dtype) - x.detach())


def rms_norm(x, weight, eps):
    xf = x if x.dtype == torch.float64 else x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return y.to(x.dtype) * weight


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


class SpinQuantModel:
    def __init__(self, t, cfg, dtype, device):
        self.cfg = cfg
        self.dtype = dtype
        get = lambda n: t[n].to(device, dtype)
        self.embed, self.norm, self.lm_head = get("embed_tokens"), get("norm"), get("lm_head")
        names = ["input_layernorm", "q_proj", "k_proj", "v_proj", "o_proj", "post_attention_layernorm",
                 "gate_proj", "up_proj", "down_proj"]
        self.layers = [{n: get(f"layers.{i}.{n}") for n in names} for i in range(cfg["num_hidden_layers"])]
        leaf = lambda r: r.to(device, torch.float32).clone().requires_grad_(True)
        self.r1 = leaf(t["R1"])
        self.r2 = [leaf(t[f"layers.{i}.R2"]) for i in range(cfg["num_hidden_layers"])]
        self.h3 = get("H3") if "H3" in t else None
        self.h4 = get("H4") if "H4" in t else None

    # The per-linear float64 rotations of the official code, redone on every forward.
    def rot_in(self, w):  # consumes the rotated residual stream: W·R1
        return (w.double() @ self.r1.double()).to(self.dtype)

    def rot_out(self, w):  # produces it: R1ᵀ·W
        return (self.r1.double().t() @ w.double()).to(self.dtype)

    def forward_loss(self, ids, s):
        c = self.cfg
        H, nh, nkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        hd = c.get("head_dim") or H // nh
        eps = c.get("rms_norm_eps", 1e-6)
        B, T = ids.shape
        inv = 1.0 / torch.pow(c.get("rope_theta", 10000.0), torch.arange(0, hd // 2, dtype=torch.float64) * 2.0 / hd)
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv)
        emb = torch.cat([freqs, freqs], -1)
        cos, sin = emb.cos().to(ids.device, self.dtype), emb.sin().to(ids.device, self.dtype)
        mask = torch.ones(T, T, dtype=torch.bool, device=ids.device).triu(1)
        bits = s["weight"]["bits"]
        act = lambda a: fake_quant_rows(a, s["act"]["bits"], s["act"]["asym"])

        x = F.embedding(ids, self.rot_in(self.embed))
        for L, r2 in zip(self.layers, self.r2):
            r2d = r2.double()
            h = act(rms_norm(x, L["input_layernorm"], eps))
            wq = fake_quant(self.rot_in(L["q_proj"]), bits)
            wk = fake_quant(self.rot_in(L["k_proj"]), bits)
            wv = (r2d.t() @ (L["v_proj"].double() @ self.r1.double()).view(nkv, hd, H)).reshape(nkv * hd, H)
            wv = fake_quant(wv.to(self.dtype), bits)
            wo = ((self.r1.double().t() @ L["o_proj"].double()).view(H, nh, hd) @ r2d).reshape(H, nh * hd)
            wo = fake_quant(wo.to(self.dtype), bits)
            q = rope(F.linear(h, wq).view(B, T, nh, hd).transpose(1, 2), cos, sin)
            k = rope(F.linear(h, wk).view(B, T, nkv, hd).transpose(1, 2), cos, sin)
            v = F.linear(h, wv).view(B, T, nkv, hd).transpose(1, 2)
            if self.h3 is not None:
                q, k = q @ self.h3, k @ self.h3
            k = fake_quant_rows(k, s["key"]["bits"], s["key"]["asym"])
            v = fake_quant_rows(v, s["value"]["bits"], s["value"]["asym"])
            rep = nh // nkv
            k = k.unsqueeze(2).expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)
            v = v.unsqueeze(2).expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)
            scores = torch.matmul(q, k.transpose(-2, -1)).float() / math.sqrt(hd)
            probs = torch.softmax(scores.masked_fill(mask, -math.inf), -1).to(v.dtype)
            attn = act(torch.matmul(probs, v).transpose(1, 2).reshape(B, T, nh * hd))
            x = x + F.linear(attn, wo)
            h = act(rms_norm(x, L["post_attention_layernorm"], eps))
            m = F.silu(F.linear(h, fake_quant(self.rot_in(L["gate_proj"]), bits))) * F.linear(
                h, fake_quant(self.rot_in(L["up_proj"]), bits))
            m = act(m @ self.h4 if self.h4 is not None else m)
            x = x + F.linear(m, fake_quant(self.rot_out(L["down_proj"]), bits))
        x = rms_norm(x, self.norm, eps)
        logits = F.linear(x, self.rot_in(self.lm_head)).float()
        V = logits.shape[-1]
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))


def cayley_sgd_step(X, G, state, lr, momentum, q=0.5, eps=1e-8, iterations=5):
    """optim/cayley_sgd.cpp's update of X [n, n] in place."""
    with torch.no_grad():
        M = momentum * state["m"] - G if "m" in state else -G
        XtM = X.t() @ M
        W_hat = M @ X.t() - (X @ (XtM @ X.t())) * 0.5
        W = W_hat - W_hat.t()
        state["m"] = W @ X
        alpha = min(lr, 2.0 * q / (W.abs().sum(0).max().item() + eps))
        WX = W @ X
        Y = X + alpha * WX
        for _ in range(iterations):
            Y = X + (0.5 * alpha) * (WX + W @ Y)
        Yd = Y.double()
        err = (Yd.t() @ Yd - torch.eye(Y.shape[1], dtype=torch.float64, device=Y.device)).abs().max().item()
        if err > 64 * torch.finfo(X.dtype).eps:
            Q, R = torch.linalg.qr(Y)
            s = torch.sign(torch.diagonal(R))
            Y = Q * torch.where(s == 0, torch.ones_like(s), s).unsqueeze(0)
        X.copy_(Y)


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help="safetensors file written by spin-bench")
    args = ap.parse_args()
    t, meta = read_safetensors(args.input)
    cfg, s = json.loads(meta["config"]), json.loads(meta["settings"])
    if s["threads"] > 0:
        torch.set_num_threads(s["threads"])
    device = torch.device(s["device"])
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[s["dtype"]]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = SpinQuantModel(t, cfg, dtype, device)
    ids = t["ids"].to(device)
    del t
    params = [model.r1] + model.r2
    states = [{} for _ in params]
    out = {"losses": [], "step_seconds": [], "forward_seconds": [], "backward_seconds": [], "optimizer_seconds": []}
    for _ in range(s["steps"]):
        t0 = time.perf_counter()
        for p in params:
            p.grad = None
        loss = model.forward_loss(ids, s)
        out["losses"].append(loss.item())
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        for p, st in zip(params, states):
            cayley_sgd_step(p, p.grad, st, s["lr"], s["momentum"])
        sync()
        t3 = time.perf_counter()
        out["forward_seconds"].append(t1 - t0)
        out["backward_seconds"].append(t2 - t1)
        out["optimizer_seconds"].append(t3 - t2)
        out["step_seconds"].append(t3 - t0)
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["threads"] = torch.get_num_threads()
    out["torch"] = torch.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
