/* layers.h - forward/backward pairs of every layer the models use, over flat
 * NCHW float32 arrays (llm.c style: outputs first, then inputs, then sizes).
 * Backward functions ADD into weight/bias gradients (the caller zeroes them
 * once per step). Input gradients are written according to `accumulate`:
 * 0 = overwrite dinp, 1 = add into dinp (for tensors read by two layers).
 * dinp may be NULL when the input gradient is not needed.
 * Kernels parallelise with OpenMP over their outer loop; results are
 * deterministic for a fixed thread count. Fast kernels have a plain `_ref`
 * twin (single-threaded, naive loops) that the tests compare against. */
#ifndef ABC_LAYERS_H
#define ABC_LAYERS_H

#include <stddef.h>
#include <stdint.h>

/* Geometry of a 2-D convolution (square kernel, no groups/dilation). */
struct conv_geom {
    int B, Cin, H, W; /* input (B,Cin,H,W) */
    int Cout, K, stride, pad;
    int Ho, Wo; /* output (B,Cout,Ho,Wo), set by conv_geom_init */
};

/* Fills Ho/Wo from the other fields. Returns 0, or -1 if the output would
 * be empty or a field is not positive. */
int conv_geom_init(struct conv_geom *g);

/* Floats of scratch space conv2d_forward/backward need for `nthreads`
 * OpenMP threads (im2col buffers and per-thread weight-gradient partials). */
size_t conv2d_workspace_floats(const struct conv_geom *g, int nthreads);

/* The convolution algorithms beyond im2col that conv2d_* may choose where
 * they apply (layers.c says where): row-tap on small maps, Winograd
 * F(2x2, 3x3) for 3x3 stride-1 convolutions of wide layers, its
 * F(4x4, 3x3) form (needs the Winograd bit too), and the phase split for
 * stride-2 3x3 convolutions. All by default; the environment variables
 * ABC_CONV_ROWTAP=0, ABC_CONV_WINOGRAD=0, ABC_CONV_WINO4=0 and
 * ABC_CONV_PHASE=0 turn one off. conv2d_set_algos (tests, benchmarks) is
 * process-wide: call it before work starts, not during. The workspace size
 * depends on it. */
enum {
    CONV_ALGO_ROWTAP = 1,
    CONV_ALGO_WINOGRAD = 2,
    CONV_ALGO_WINO4 = 4,
    CONV_ALGO_PHASE = 8,
    CONV_ALGO_ALL = 15
};
int conv2d_get_algos(void);
void conv2d_set_algos(int mask);
/* The algorithm conv2d_* run for g now: "pointwise" (a 1x1 map),
 * "winograd4" (F(4x4, 3x3)), "winograd" (F(2x2, 3x3)), "rowtap",
 * "implicit" (implicit im2col), "phase" (stride 2) or "im2col". */
const char *conv2d_algo_name(const struct conv_geom *g);

/* out (B,Cout,Ho,Wo) = conv(inp (B,Cin,H,W), weight (Cout,Cin,K,K)) + bias
 * (Cout, may be NULL). work: conv2d_workspace_floats() floats. */
void conv2d_forward(float *out, const float *inp, const float *weight,
                    const float *bias, const struct conv_geom *g, float *work);
/* dweight (Cout,Cin,K,K) += ..., dbias (Cout, may be NULL) += ...,
 * dinp (B,Cin,H,W) =/+= ... (see accumulate above; may be NULL). */
void conv2d_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     const struct conv_geom *g, float *work, int accumulate);
/* out = max(conv(inp, weight) + bias, 0) with the bias and ReLU applied in
 * the convolution's own output pass (bias may be NULL). Same numbers as
 * conv2d_forward then relu_forward. */
void conv2d_bias_relu_forward(float *out, const float *inp, const float *weight,
                              const float *bias, const struct conv_geom *g,
                              float *work);
/* out = max(conv(inp, weight) + bias + res, 0), res (B, Cout, Ho, Wo) added
 * in the same output pass (a ResNet block's end at inference, its BN
 * folded into weight and bias). Same bits as conv2d_forward with the bias
 * then add_relu_forward. */
void conv2d_bias_add_relu_forward(float *out, const float *inp,
                                  const float *weight, const float *bias,
                                  const float *res, const struct conv_geom *g,
                                  float *work);
/* out = max(conv(inp, weight) + bias + res, 0), res (B, Cout, Ho, Wo) added
 * in the same output pass (a ResNet block's end at inference, its BN
 * folded into weight and bias). Same numbers as conv2d_forward then
 * add_relu_forward up to the rounding of the bias add. */
void conv2d_bias_add_relu_forward(float *out, const float *inp,
                                  const float *weight, const float *bias,
                                  const float *res, const struct conv_geom *g,
                                  float *work);
void conv2d_forward_ref(float *out, const float *inp, const float *weight,
                        const float *bias, const struct conv_geom *g);
void conv2d_backward_ref(float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp,
                         const float *weight, const struct conv_geom *g,
                         int accumulate);

/* Batch normalisation over (B,HW) per channel of x (B,C,HW).
 * training != 0: normalise with the batch mean and biased variance, store
 * mean/invstd (C each) for backward, and update running_mean/running_var
 * (unbiased variance) with `momentum` (PyTorch convention: 0.1).
 * training == 0: normalise with running statistics (mean/invstd are still
 * filled from them). */
void batchnorm_forward(float *out, float *mean, float *invstd, const float *inp,
                       const float *gamma, const float *beta,
                       float *running_mean, float *running_var, int B, int C,
                       int HW, float momentum, float eps, int training);
/* Backward of training-mode batchnorm. dgamma, dbeta (C) +=. */
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta,
                        const float *dout, const float *inp, const float *mean,
                        const float *invstd, const float *gamma, int B, int C,
                        int HW, int accumulate);

/* Batchnorm followed by a ReLU, fused: out = max(batchnorm(inp), 0) in one
 * pass (same arguments and statistics as batchnorm_forward). Backward takes
 * the fused forward's `out` and masks dout by (out > 0) while computing the
 * batchnorm backward: the same results as relu_backward then
 * batchnorm_backward, without the separate pass. dout is not modified. */
void batchnorm_relu_forward(float *out, float *mean, float *invstd,
                            const float *inp, const float *gamma,
                            const float *beta, float *running_mean,
                            float *running_var, int B, int C, int HW,
                            float momentum, float eps, int training);
void batchnorm_relu_backward(float *dinp, float *dgamma, float *dbeta,
                             const float *dout, const float *out,
                             const float *inp, const float *mean,
                             const float *invstd, const float *gamma, int B,
                             int C, int HW, int accumulate);

/* Batchnorm, residual add and ReLU forward, fused (a ResNet block's end):
 * out = max(batchnorm(inp) + res, 0) in one pass, res laid out as inp;
 * the batchnorm's own output is not stored (its backward needs only inp
 * and the statistics; the add's needs out). Same bits as
 * batchnorm_forward then add_relu_forward. The backward stays
 * add_relu_backward then batchnorm_backward: folding the mask into the
 * batchnorm's strided passes measured slower than the add's flat one. */
void batchnorm_add_relu_forward(float *out, float *mean, float *invstd,
                                const float *inp, const float *res,
                                const float *gamma, const float *beta,
                                float *running_mean, float *running_var, int B,
                                int C, int HW, float momentum, float eps,
                                int training);

/* The training-mode batchnorm in steps, for statistics over more images
 * than this call sees (synchronized BN: every rank adds its sums to the
 * other ranks' between the steps). The same per-channel arithmetic as the
 * single-call kernels above; sums run per (b, c) row in float and across
 * rows in double.
 * batchnorm_sums: sd[c] = sum of (x - centre[c]), sq[c] (may be NULL) =
 * sum of (x - centre[c])^2 over the B*HW values of channel c of inp
 * (B,C,HW); centre (C) may be NULL (0). */
void batchnorm_sums(double *sd, double *sq, const float *inp,
                    const float *centre, int B, int C, int HW);
/* mean, invstd (C) from sums sd, sq about centre (C, may be NULL; mean
 * may alias it) over n values: mean = centre + sd/n, biased variance
 * (sq - sd^2/n)/n; and, when both are not NULL, running_mean and
 * running_var updated with `momentum` (unbiased variance, n/(n-1)). */
void batchnorm_stats(float *mean, float *invstd, float *running_mean,
                     float *running_var, const float *centre, const double *sd,
                     const double *sq, double n, int C, float momentum,
                     float eps);
/* out = (inp - mean) * invstd * gamma + beta per channel, plus res (may be
 * NULL; laid out as inp), then max(., 0) when relu != 0. */
void batchnorm_apply(float *out, const float *inp, const float *res,
                     const float *mean, const float *invstd, const float *gamma,
                     const float *beta, int B, int C, int HW, int relu);
/* sdy[c] = sum of g, sdyx[c] = sum of g * xhat over channel c, where g is
 * dout masked by (relu_out > 0) when relu_out (the fused forward's output)
 * is not NULL, and xhat = (inp - mean) * invstd; dgamma += sdyx, dbeta +=
 * sdy (either may be NULL). */
void batchnorm_backward_sums(double *sdy, double *sdyx, float *dgamma,
                             float *dbeta, const float *dout,
                             const float *relu_out, const float *inp,
                             const float *mean, const float *invstd, int B,
                             int C, int HW);
/* dinp =/+= gamma * invstd * (g - sdy/n - xhat * sdyx/n) (g, xhat as
 * above): the input gradient of a batchnorm whose batch holds n values
 * per channel with these gradient sums (n = B*HW and this call's own sums
 * give batchnorm_backward's, or batchnorm_relu_backward's). */
void batchnorm_backward_input(float *dinp, const float *dout,
                              const float *relu_out, const float *inp,
                              const float *mean, const float *invstd,
                              const float *gamma, const double *sdy,
                              const double *sdyx, double n, int B, int C,
                              int HW, int accumulate);

/* out = max(inp, 0), n elements (out may alias inp). */
void relu_forward(float *out, const float *inp, size_t n);
/* dinp =/+= dout * (out > 0). Uses the forward OUTPUT, so in-place is ok. */
void relu_backward(float *dinp, const float *dout, const float *out, size_t n,
                   int accumulate);

/* Max pool, window k, stride s, no padding, floor mode.
 * out (B,C,Ho,Wo) with Ho = (H-k)/s+1; argmax (B,C,Ho,Wo) holds the index
 * within the (H,W) plane of the chosen input for backward. */
void maxpool_forward(float *out, int32_t *argmax, const float *inp, int B,
                     int C, int H, int W, int k, int s);
/* The plain loop over any window; maxpool_forward runs 2x2 windows of
 * stride 2 (VGG's) on a vectorised row kernel with the same results. */
void maxpool_forward_ref(float *out, int32_t *argmax, const float *inp, int B,
                         int C, int H, int W, int k, int s);
void maxpool_backward(float *dinp, const float *dout, const int32_t *argmax,
                      int B, int C, int H, int W, int k, int s, int accumulate);

/* Global average pool: out (B,C) = mean over HW of inp (B,C,HW). */
void avgpool_forward(float *out, const float *inp, int B, int C, int HW);
void avgpool_backward(float *dinp, const float *dout, int B, int C, int HW,
                      int accumulate);

/* Fully connected: out (B,O) = inp (B,In) . weight(O,In)^T + bias (O). */
void linear_forward(float *out, const float *inp, const float *weight,
                    const float *bias, int B, int In, int O);
void linear_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     int B, int In, int O, int accumulate);
void linear_forward_ref(float *out, const float *inp, const float *weight,
                        const float *bias, int B, int In, int O);
void linear_backward_ref(float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp,
                         const float *weight, int B, int In, int O,
                         int accumulate);

/* Softmax cross-entropy, mean over the batch. probs (B,C) receives the
 * softmax; returns the mean loss. Labels in [0,C). correct (may be NULL)
 * receives the number of rows whose argmax equals the label. */
float softmax_xent_forward(float *probs, const float *logits, const int *labels,
                           int B, int C, int *correct);
/* dlogits (B,C) = (probs - onehot(label)) / B (overwrites). */
void softmax_xent_backward(float *dlogits, const float *probs,
                           const int *labels, int B, int C);

/* Residual add: out = a + b (n elements). */
void add_forward(float *out, const float *a, const float *b, size_t n);
/* da, db =/+= dout (each with its own accumulate flag; either may be NULL). */
void add_backward(float *da, float *db, const float *dout, size_t n,
                  int accumulate_a, int accumulate_b);

/* Residual add followed by a ReLU, fused: out = max(a + b, 0) in one pass
 * (out may alias a or b). Backward: dout is masked by (out > 0) IN PLACE
 * (what relu_backward over the add's output does), and da, db =/+= the
 * masked gradient; da or db NULL: that input's gradient is dout itself
 * (aliased buffers). The same numbers as relu_backward then add_backward. */
void add_relu_forward(float *out, const float *a, const float *b, size_t n);
void add_relu_backward(float *da, float *db, float *dout, const float *out,
                       size_t n, int accumulate_a, int accumulate_b);

/* CIFAR ResNet "option A" shortcut: out (B,Cout,Ho,Wo) takes inp
 * (B,Cin,H,W) subsampled with `stride` (inp[..., ::s, ::s]) and zero-padded
 * in channels: output channel c = input channel c - (Cout-Cin)/2 where that
 * lies in [0,Cin), else 0. Ho = (H-1)/s+1. */
void shortcut_forward(float *out, const float *inp, int B, int Cin, int H,
                      int W, int Cout, int stride);
void shortcut_backward(float *dinp, const float *dout, int B, int Cin, int H,
                       int W, int Cout, int stride, int accumulate);

#endif
