"""ONNX Runtime against PyTorch float32 for the frozen pass, on a CPU (issue 21, item 4).

The backbone is exported with ``torch.onnx.export`` (eager attention, dynamic batch and
token axes) and run by an ``onnxruntime.InferenceSession`` (CPU provider, all graph
optimisations, as many intra-op threads as torch uses). Both run the same length-sorted,
dynamically padded batches of the same EmoBank sentences, interleaved in one process,
best of ``--repeats``; reported per backbone: texts per CPU-second and per wall-second of
each, the ratio, and the largest difference of the pooled embeddings (cosine). Needs
``pip install onnxruntime onnx`` (not a dependency of skftr: see ``benchmarks/RESULTS.md``
for why).

    python benchmarks/bench_onnx.py --texts 1024 --backbones minilm mpnet
"""
import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from skftr.datasets import load_emobank
from skftr.trunk import TrunkSpec, get_trunk


def export(model, tokenizer, path):
    example = tokenizer(["an example", "a second, longer example to pad"], padding=True,
                        return_tensors="pt")

    class Last(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    axes = {name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "last")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Last(), (example["input_ids"], example["attention_mask"]), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["last"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)


def main():
    import onnxruntime
    from transformers import AutoModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--backbones", nargs="+", default=["minilm", "mpnet"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    texts, _ = load_emobank("V")
    texts = [t for t in texts if isinstance(t, str) and t.strip()][:args.texts]
    print(f"{len(texts)} EmoBank sentences, {torch.get_num_threads()} threads\n")
    print("| backbone | path | texts per CPU-s | texts per wall-s | vs torch fp32 (CPU) "
          "| min cosine to torch |")
    print("|---|---|---|---|---|---|")
    for name in args.backbones:
        trunk = get_trunk(TrunkSpec.of(name, precision="fp32"))
        model = AutoModel.from_pretrained(trunk.spec.path, local_files_only=True,
                                          attn_implementation="eager").eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "backbone.onnx"
            export(model, trunk.tokenizer, path)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = onnxruntime.InferenceSession(str(path), options,
                                                   providers=["CPUExecutionProvider"])

            def ort(input_ids, attention_mask, **unused):
                feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
                out = session.run(None, feed)[0]
                return type("Out", (), {"last_hidden_state": torch.from_numpy(out)})

            ids = trunk.tokenize(texts)
            best, embeddings = {}, {}
            for _ in range(args.repeats):
                for label, module in (("torch fp32", trunk.model), ("onnxruntime fp32", ort)):
                    cpu, wall = time.process_time(), time.perf_counter()
                    out = trunk.run(None, ids=ids, module=module)
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    old = best.get(label, (np.inf, np.inf))
                    best[label] = (min(old[0], cpu), min(old[1], wall))
                    embeddings[label] = out.embeddings
        ref = embeddings["torch fp32"]
        for label, (cpu, wall) in best.items():
            e = embeddings[label]
            cos = np.sum(ref * e, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(e, axis=1)
            print(f"| {name} | {label} | {len(texts) / cpu:.0f} | {len(texts) / wall:.0f} "
                  f"| {best['torch fp32'][0] / cpu:.2f}x | {cos.min():.6f} |", flush=True)
    print(f"\nCommand: python benchmarks/bench_onnx.py --texts {args.texts} --backbones "
          f"{' '.join(args.backbones)} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
