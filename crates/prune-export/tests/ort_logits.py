"""Runs an ONNX model in ONNX Runtime on the inputs of a JSON file and prints the logits as
JSON. Usage: python ort_logits.py MODEL.onnx INPUTS.json [OPTIMIZED.onnx]
INPUTS.json: {"batch": B, "seq": T, "input_ids": [...], "attention_mask": [...],
"token_type_ids": [...]} (row-major). With OPTIMIZED.onnx, ONNX Runtime also writes the graph
it optimized there, and the counts of its operators are printed too."""
import json
import sys

import numpy as np
import onnxruntime as ort

model, inputs = sys.argv[1], json.load(open(sys.argv[2]))
options = ort.SessionOptions()
options.intra_op_num_threads = 1
if len(sys.argv) > 3:
    options.optimized_model_filepath = sys.argv[3]
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
shape = (inputs["batch"], inputs["seq"])
feeds = {
    k: np.array(inputs[k], dtype=np.int64).reshape(shape)
    for k in ("input_ids", "attention_mask", "token_type_ids")
}
(logits,) = session.run(["logits"], feeds)
out = {"logits": logits.astype(float).ravel().tolist(), "shape": list(logits.shape)}
if len(sys.argv) > 3:
    import onnx

    counts = {}
    for node in onnx.load(sys.argv[3]).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    out["ops"] = counts
print(json.dumps(out))
