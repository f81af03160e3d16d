"""onnx_check.py - checks an exported ONNX file with python3-onnx: the full
checker (with shape inference) passes, opset and IR version, producer, the
graph's input "input" (batch, C, H, W) with a symbolic batch and output
"logits" (batch, classes), the structure in the metadata, BN folded (no
BatchNormalization node) and one Conv per conv layer, and the inferred
shape of the logits. Exits 1 naming what failed.
usage: /usr/bin/python3 onnx_check.py MODEL.onnx C H W CLASSES NCONV STRUCTURE
  STRUCTURE: the expected structure vector "c1,c2,..." """
import sys

import onnx
from onnx import shape_inference


def main():
    path, C, H, W, K, nconv = sys.argv[1], *map(int, sys.argv[2:7])
    structure = sys.argv[7]
    fails = []

    def check(what, ok):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            fails.append(what)

    m = onnx.load(path)
    try:
        onnx.checker.check_model(m, full_check=True)
        check("onnx.checker.check_model(full_check=True) passes", True)
    except Exception as e:  # the checker's own exception types vary
        check("onnx.checker.check_model(full_check=True): %s" % e, False)
    check("ir_version 7 (got %d)" % m.ir_version, m.ir_version == 7)
    ops = {o.domain: o.version for o in m.opset_import}
    check("opset 13 of the default domain (got %s)" % ops, ops == {"": 13})
    check("producer abcprune (got %s %s)" % (m.producer_name, m.producer_version),
          m.producer_name == "abcprune" and m.producer_version != "")

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    g = m.graph
    check("one input 'input' (batch,%d,%d,%d) (got %s)" %
          (C, H, W, [(i.name, dims(i)) for i in g.input]),
          len(g.input) == 1 and g.input[0].name == "input" and
          dims(g.input[0]) == ["batch", C, H, W])
    check("one output 'logits' (batch,%d) (got %s)" %
          (K, [(o.name, dims(o)) for o in g.output]),
          len(g.output) == 1 and g.output[0].name == "logits" and
          dims(g.output[0]) == ["batch", K])
    meta = {p.key: p.value for p in m.metadata_props}
    check("metadata structure %s (got %s)" % (structure, meta.get("abcprune.structure")),
          meta.get("abcprune.structure") == structure)
    kinds = [n.op_type for n in g.node]
    check("no BatchNormalization node (folded)", "BatchNormalization" not in kinds)
    check("%d Conv nodes (got %d)" % (nconv, kinds.count("Conv")),
          kinds.count("Conv") == nconv)
    check("one Gemm (got %d)" % kinds.count("Gemm"), kinds.count("Gemm") == 1)
    # every intermediate value gets a fully known shape but the batch
    inf = shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    shapes = {v.name: dims(v) for v in inf.graph.value_info}
    unknown = [n for n, d in shapes.items() if d[0] != "batch" or 0 in d[1:]]
    check("shape inference: %d values, all (batch, known dims) (bad: %s)" %
          (len(shapes), unknown[:3]), len(shapes) >= len(g.node) - 1 and not unknown)
    print("%s: %d nodes %s, %d initializers" %
          (path, len(g.node), sorted(set(kinds)), len(g.initializer)))
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
