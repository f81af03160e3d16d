/* onnx.h - exports a model's inference graph as an ONNX file, encoded with
 * protobuf-c from the onnx.proto that libonnx-dev ships (the build runs
 * protoc-c on it). The graph: Conv with each batchnorm folded into the
 * conv's weight and a bias, Relu, MaxPool, GlobalAveragePool, Add for
 * residual sums, the option-A shortcut as Slice (stride) + Pad (zero
 * channels), Flatten + Gemm for the classifier. Input "input", float32
 * (batch, C, H, W) with a symbolic batch dimension "batch"; output "logits"
 * (batch, classes). */
#ifndef ABC_ONNX_H
#define ABC_ONNX_H

#include "nn/model.h"

#define ONNX_OPSET 13     /* default-domain operator set */
#define ONNX_IR_VERSION 7 /* the IR version of opset 13 (onnx 1.8) */
#define ONNX_PRODUCER_VERSION "0.2.0"

/* Writes m's inference graph (full or pruned, any model model_create
 * builds) to path atomically: a crash or error never leaves a partial file
 * and an existing file at path is replaced only on success. The model's
 * arch, structure and input shape go into the metadata (abcprune.*).
 * m is only read. Returns 0, or ABC_EVALUE (no path; a non-finite weight or
 * BN statistic, or a variance + eps that is not positive: the tensor is
 * named), ABC_ENOMEM, or ABC_EIO (path cannot be written), with a message
 * naming path in err. */
int onnx_export(const struct model *m, const char *path, char *err);

#endif
