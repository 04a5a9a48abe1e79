"""Which post-training int8 settings keep the float model's decisions? Measured on val only.

    python bench/int8_variants.py                       # the shipped recommended model
    python bench/int8_variants.py --ckpt runs/x/best.pt --data D
    python bench/int8_variants.py --variants --top 0    # the per-layer passes only

Quantises the checkpoint with `ferkit.infer.export.quantize_int8` under each variant, runs each on
val, one view per face (as `predict` runs by default), and reports the labels that agree with
float32 torch, exact top-two ties (a tie goes to the class first in the alphabet), macro-F1, the
mean |p_int8 - p_float32| over faces and classes (against the float32 ONNX model, which applies
the same recorded calibration), the median float32 top-two margin of the faces whose label
changed, and batched faces/s. The variants:

- VARIANTS: the calibration set, ONNX Runtime's calibration method, 16-bit or symmetric
  activations, residual adds in float32, and 16-bit activations with every Conv in float32 (no
  int8 weights at all: what activation rounding alone costs);
- the per-node pass: for each node of the `--layers` op types (Conv), the shipped settings with
  that one node in float32 (`quantize_int8(keep_nodes=...)`). Its input and output tensors stay
  quantised when their other producers and consumers are int8, so this takes away the node's
  weight rounding only;
- the per-activation pass: for each activation tensor int8 rounds (the graph's input, each Relu,
  Add or pool output), the nodes around it in float32 (its producer and consumers), so that it
  stays float;
- the `--top` most sensitive nodes of the per-node pass in float32 together (1, 2, ...), and the
  `--top-activations` most sensitive activations: most sensitive = the smallest mean |dp| when
  left in float32 (`--rank-by agree`: the most labels agreeing), on val;
- the stem (the first Conv) in float32, and the last residual block (its convolutions and Add);
- the float32 ONNX model itself, not quantised.

Faces/s: batches of 256 over the first `--speed-faces` val faces, every variant timed once per
round, in turns, for `--rounds` rounds, so that all compare the same moments of a shared machine;
the best round of each, and its ratio to the shipped settings' best (the reference; also the
median of the per-round ratios). The load average before and after is recorded. Val only: a choice
of export settings is a choice, and test is reported once, by bench/int8_ties.py. Writes
bench/results/int8_variants-<cpu>.json; an existing file is replaced only with --force.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchio import ROOT, cpu_tag, fer_zip, save_report  # noqa: E402
from int8_ties import ties  # noqa: E402

REFERENCE = "shipped settings (512 images, min/max)"
FLOAT32 = "float32 ONNX (not quantised)"
# name: (calibration images, quantize_int8 keyword arguments)
VARIANTS = {
    REFERENCE: (512, {}),
    "2,048 calibration images": (2048, {}),
    "percentile calibration (2,048)": (2048, {"method": "Percentile"}),
    "entropy calibration (2,048)": (2048, {"method": "Entropy"}),
    "residual adds in float32": (512, {"keep_float": ("Add",)}),
    "symmetric int8 activations": (512, {"activations": "QInt8"}),
    "16-bit activations": (512, {"activations": "QUInt16"}),
    "16-bit activations, every Conv in float32": (512, {"activations": "QUInt16", "keep_float": ("Conv",)}),
}
PASS_THROUGH = ("Relu", "Flatten", "Reshape")  # int8 quantises their input and output as one tensor
ACTIVATION_OPS = ("Relu", "Add", "GlobalAveragePool", "MaxPool", "AveragePool")
MARGINS = (0.002, 0.005, 0.01, 0.02)


def conv_macs(graph) -> dict[str, int]:
    """Multiply-adds of each Conv node for one face, from ONNX shape inference (`graph`: a ModelProto)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(graph)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output]}
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    macs = {}
    for n in model.graph.node:
        if n.op_type == "Conv":
            out, w = shapes[n.output[0]], weights[n.input[1]]  # (N, C_out, H, W), (C_out, C_in/groups, kh, kw)
            macs[n.name] = int(np.prod(out[1:]) * np.prod(w[1:]))
    return macs


def last_block(names: list[str]) -> tuple[str, ...]:
    """The nodes of the last residual block: those under the folder of the last Add."""
    adds = [n for n in names if n.endswith("/Add")]
    if not adds:
        return ()
    prefix = adds[-1].rsplit("/", 1)[0] + "/"
    return tuple(n for n in names if n.startswith(prefix))


def activation_nodes(graph) -> dict[str, tuple[str, ...]]:
    """Each activation tensor int8 rounds -> the nodes that keep it float when left in float32: its
    producer (with the node before a Relu) and its consumers (a Flatten with its own readers). The
    tensors: the graph's input and the outputs of ACTIVATION_OPS, less those only a Relu reads (int8
    rounds the Relu's output instead)."""
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def readers(tensor: str) -> list:
        out = []
        for c in consumers.get(tensor, []):
            out += [c, *readers(c.output[0])] if c.op_type in PASS_THROUGH else [c]
        return out

    groups = {}
    for tensor in [graph.input[0].name] + [n.output[0] for n in graph.node if n.op_type in ACTIVATION_OPS]:
        if all(c.op_type == "Relu" for c in consumers.get(tensor, [])):
            continue  # read by a Relu only (int8 rounds the Relu's output, the Relu folded away), or by nothing
        nodes, p = [], producer.get(tensor)
        while p is not None:
            nodes.append(p.name)
            p = producer.get(p.input[0]) if p.op_type in PASS_THROUGH else None
        groups[tensor] = tuple(nodes + [c.name for c in readers(tensor)])
    return groups


def faces_per_second(predictor, images: np.ndarray, batch: int = 256) -> float:
    """Batched throughput over `images` (after one warm-up batch)."""
    predictor.predict_crops(images[:batch])
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        predictor.predict_crops(images[i:i + batch])
    return len(images) / (time.perf_counter() - start)


def time_in_turns(predictors: dict, images: np.ndarray, rounds: int, reference: str) -> dict[str, dict]:
    """faces/s of every predictor, timed once per round in turns: the best round's, its ratio to the
    reference's best, and the median of the per-round ratios to the reference."""
    runs: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, predictor in predictors.items():
            runs[name].append(faces_per_second(predictor, images))
    ref = np.array(runs[reference])
    return {name: {"faces_per_s": max(r), "faces_per_s_rounds": r, "ratio": max(r) / ref.max(),
                   "ratio_median": float(np.median(np.array(r) / ref))} for name, r in runs.items()}


def margins(probs: np.ndarray) -> np.ndarray:
    """Top-one minus top-two probability of each row."""
    top = np.sort(probs, axis=1)
    return top[:, -1] - top[:, -2]


def measure(probs: np.ndarray, p32: np.ndarray, onnx32: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """An int8 model's val probabilities against float32: labels agreeing with torch's (`p32`), ties,
    macro-F1, mean |dp| against the float32 ONNX model's (`onnx32`), and the median float32 margin
    of the faces whose label changed."""
    from ferkit.metrics import compute_metrics

    pred = probs.argmax(1)
    changed = pred != p32.argmax(1)
    return {"agree_with_float32": int((~changed).sum()), "ties": ties(probs),
            "macro_f1": compute_metrics(labels, pred, class_names)["macro_f1"],
            "mean_abs_dp": float(np.abs(probs - onnx32).mean()),
            "changed_median_float32_margin": float(np.median(margins(onnx32)[changed])) if changed.any() else None}


def short(name: str) -> str:
    """A node's or tensor's name without the common '/model/backbone/' prefix, for the printout."""
    return name.removeprefix("/model/backbone/")


def ranked(rows: dict[str, dict], by: str) -> list[str]:
    """Keys of `rows` (a pass's variants), most sensitive first: smallest mean |dp|, or most agreeing."""
    if by == "agree":
        return sorted(rows, key=lambda k: (-rows[k]["agree_with_float32"], rows[k]["mean_abs_dp"]))
    return sorted(rows, key=lambda k: (rows[k]["mean_abs_dp"], -rows[k]["agree_with_float32"]))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default=str(ROOT / "pretrained" / "ferkit-recommended.pt"))
    p.add_argument("--data", default=str(fer_zip()), help="FER-2013 (default: the shared zip)")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS (default: all)")
    p.add_argument("--layers", nargs="*", default=["Conv"], help="op types of the per-node pass (default Conv)")
    p.add_argument("--top", type=int, default=5, help="keep the 1..TOP most sensitive nodes in float32 (default 5)")
    p.add_argument("--top-activations", type=int, default=3, help="the same for activations (default 3)")
    p.add_argument("--rank-by", choices=("dp", "agree"), default="dp", help="sensitivity: mean |dp| or agreement")
    p.add_argument("--rounds", type=int, default=5, help="timing rounds, every variant once per round (default 5)")
    p.add_argument("--speed-faces", type=int, default=1024, help="val faces per timing (default 1,024)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: its own, one per core)")
    p.add_argument("--out", help="JSON (default bench/results/int8_variants-<cpu>.json)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    args = p.parse_args(argv)

    import onnx

    from ferkit import Predictor
    from ferkit.data import load_data
    from ferkit.evaluate import match_classes, predict_proba
    from ferkit.infer.export import export_bytes, quantize_int8
    from ferkit.infer.int8 import CALIBRATION_SEED
    from ferkit.models import load_model, read_checkpoint
    from ferkit.runtime.device import cpu_info

    machine = cpu_info()
    out = Path(args.out) if args.out else HERE / "results" / f"int8_variants-{cpu_tag(machine)}.json"
    if out.exists() and not args.force:
        p.error(f"{out} exists: --force replaces it")
    ckpt = read_checkpoint(args.ckpt)
    data = match_classes(load_data(args.data, log=lambda s: None), ckpt["class_names"])
    model, _ = load_model(ckpt)
    train, val = data.splits["train"], data.splits["val"]
    p32 = predict_proba(model, val.images, "cpu", False, "none")
    fp32 = export_bytes(ckpt)[0]
    graph = onnx.load_from_string(fp32)
    macs = conv_macs(graph)
    tmp = Path(tempfile.mkdtemp(prefix="ferkit-int8-"))
    (tmp / "fp32.onnx").write_bytes(fp32)
    predictors = {FLOAT32: Predictor(tmp / "fp32.onnx", backend="onnx", detect=False, tta="none", threads=args.threads)}
    onnx32 = predictors[FLOAT32].predict_crops(val.images)
    report: dict = {"machine": machine, "checkpoint": args.ckpt, "split": "val", "view": "single", "n": len(p32),
                    "onnxruntime_threads": args.threads or "default", "load_average_before": os.getloadavg()[0],
                    "reference": REFERENCE, "rank_by": args.rank_by, "conv_macs": macs,
                    "float32_margin_below": {str(m): int((margins(onnx32) < m).sum()) for m in MARGINS},
                    "variants": {FLOAT32: measure(onnx32, p32, onnx32, val.labels, data.class_names)}}

    def run(name: str, n: int, options: dict) -> dict:
        """Quantise under `options`, measure on val, keep the predictor for the timing rounds."""
        pick = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(len(train.labels), n, replace=False))
        path = quantize_int8(fp32, train.images[pick], tmp / f"v{len(predictors)}.int8.onnx", **options)
        predictors[name] = Predictor(path, backend="onnx", detect=False, tta="none", threads=args.threads)
        kept = [node for node in graph.graph.node if node.name in options.get("keep_nodes", ())
                or node.op_type in options.get("keep_float", ())]
        row = {"calibration_images": n, **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
               "conv_macs_in_float32": sum(macs.get(node.name, 0) for node in kept),
               **measure(predictors[name].predict_crops(val.images), p32, onnx32, val.labels, data.class_names)}
        report["variants"][name] = row
        print(f"{name[:60]:<60} agree {row['agree_with_float32']:>5}/{len(p32)}  ties {row['ties']:>3}"
              f"  macro-F1 {row['macro_f1']:.4f}  mean|dp| {row['mean_abs_dp']:.5f}", flush=True)
        return row

    for name in dict.fromkeys([REFERENCE, *args.variants]):
        run(name, *VARIANTS[name])
    names = [n.name for n in graph.graph.node]
    layers = [n for n in graph.graph.node if n.op_type in args.layers]
    nodes = {n.name: run(f"node {short(n.name)} in float32", 512, {"keep_nodes": (n.name,)}) for n in layers}
    groups = activation_nodes(graph.graph)
    tensors = {t: run(f"activation {short(t)} in float32", 512, {"keep_nodes": keep}) for t, keep in groups.items()}
    report["node_ranking"], report["activation_ranking"] = ranked(nodes, args.rank_by), ranked(tensors, args.rank_by)
    for k in range(1, min(args.top, len(nodes)) + 1):
        run(f"top {k} sensitive nodes in float32", 512, {"keep_nodes": tuple(report["node_ranking"][:k])})
    for k in range(1, min(args.top_activations, len(tensors)) + 1):
        keep = dict.fromkeys(node for t in report["activation_ranking"][:k] for node in groups[t])
        run(f"top {k} sensitive activations in float32", 512, {"keep_nodes": tuple(keep)})
    if macs:
        run("stem conv in float32", 512, {"keep_nodes": (next(iter(macs)),)})
    if last_block(names):
        run("last residual block in float32", 512, {"keep_nodes": last_block(names)})

    print(f"\ntiming {len(predictors)} variants in turns, {args.rounds} rounds of {args.speed_faces} faces", flush=True)
    speeds = time_in_turns(predictors, val.images[:args.speed_faces], args.rounds, REFERENCE)
    for name, speed in speeds.items():
        report["variants"][name] |= speed
        row = report["variants"][name]
        print(f"{name[:60]:<60} agree {row['agree_with_float32']:>5}  ties {row['ties']:>3}"
              f"  {speed['faces_per_s']:>6.0f} faces/s  {speed['ratio']:.2f}x (median {speed['ratio_median']:.2f}x)")
    report["load_average_after"] = os.getloadavg()[0]
    save_report(report, out)
    return report


if __name__ == "__main__":
    main()
