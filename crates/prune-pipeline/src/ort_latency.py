"""Times ONNX models in ONNX Runtime (CPU, 2 threads), alternately, on the same random
batches of T tokens, and prints the median milliseconds per model and batch size as JSON.
Usage: python ort_latency.py SECONDS SEQ VOCAB BATCH[,BATCH...] MODEL.onnx [MODEL.onnx ...]"""
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

seconds, seq, vocab = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
batches = [int(b) for b in sys.argv[4].split(",")]
options = ort.SessionOptions()
options.intra_op_num_threads = 2
options.inter_op_num_threads = 1
sessions = [
    ort.InferenceSession(m, options, providers=["CPUExecutionProvider"]) for m in sys.argv[5:]
]
rng = np.random.default_rng(0)
low = 1000 if vocab > 2000 else 1
medians = [[] for _ in sessions]
for b in batches:
    feeds = {
        "input_ids": rng.integers(low, vocab, size=(b, seq)).astype(np.int64),
        "attention_mask": np.ones((b, seq), np.int64),
        "token_type_ids": np.zeros((b, seq), np.int64),
    }
    for s in sessions:
        s.run(None, feeds)
    times = [[] for _ in sessions]
    start = time.perf_counter()
    while len(times[0]) < 3 or (time.perf_counter() - start < seconds and len(times[0]) < 50):
        for s, t in zip(sessions, times):
            clock = time.perf_counter()
            s.run(None, feeds)
            t.append((time.perf_counter() - clock) * 1e3)
    for m, t in zip(medians, times):
        m.append(statistics.median(t))
print(json.dumps({"version": ort.__version__, "median_ms": medians}))
