/* The whole C interface of fastnn's C backend, and the text cffi's cdef
   reads (so it holds declarations only: no preprocessor lines).

   Every array argument is the address of a NumPy array object (Python's
   id(array)) that the Python side has checked against the backend contract
   (fastnn/_backends/__init__.py): C-contiguous, aligned, of the call's dtype.
   fnn_setup() finds, once, where NumPy keeps an array's data pointer and
   shape inside that object; the kernels then read both from there, so a
   call passes one integer per array and nothing is converted or wrapped
   per call.  `dtype` is 0 for float32 and 1 for float64.

   The loss kernel returns the loss as a double (NaN with fnn_last_failed()
   true when it ran out of memory); the others return 0, or 1 when scratch
   memory could not be allocated.  The GIL is released during each call (cffi's API mode). */

/* Set-up, answered once at import. */
int fnn_setup(uintptr_t probe, uintptr_t probe_data, int probe_ndim,
              int64_t probe_dim0, int64_t probe_dim1);
int fnn_select_isa(const char *name);
const char *fnn_isa_name(void);
const char *fnn_supported_isas(void);
const char *fnn_build_flags(void);
int fnn_openmp_version(void);
void fnn_set_num_threads(int n);
int fnn_get_num_threads(void);
void fnn_set_cache_bytes(int64_t last_level);
int fnn_last_failed(void);

/* Batch normalization: x, y, dy, dx are (N, C, S). flags: 1 training. */
int fnn_batchnorm_forward(uintptr_t x, uintptr_t weight, uintptr_t bias,
                           uintptr_t running_mean, uintptr_t running_var,
                           uintptr_t y, uintptr_t mean, uintptr_t invstd,
                           int dtype, int flags, double momentum, double eps);
int fnn_batchnorm_backward(uintptr_t dy, uintptr_t x, uintptr_t weight,
                            uintptr_t mean, uintptr_t invstd, uintptr_t dx,
                            uintptr_t dweight, uintptr_t dbias, int dtype, int flags);

/* Softmax over rows of an (R, L) array; log = 1 for log-softmax. */
int fnn_softmax(uintptr_t x, uintptr_t y, int dtype, int log);

/* Softmax cross-entropy over (N, C) logits.  labels (N,) int64 or probs
   (N, C), the other zero-length; reduction 0 none, 1 sum, 2 mean.
   flags: 1 write the gradient into dlogits (which may be logits itself),
   2 scale the gradient per row by grad_rows.  Returns the reduced loss
   (0.0 for "none", whose per-row losses go into losses). */
double fnn_cross_entropy(uintptr_t logits, uintptr_t labels, uintptr_t probs,
                         uintptr_t weight, int64_t ignore_index, int reduction,
                         double label_smoothing, double grad_loss, uintptr_t grad_rows,
                         uintptr_t dlogits, uintptr_t losses, int dtype, int flags);

/* The passes around the Linear layer's matrix products (y, dy, dz (N, M)). */
int fnn_bias_relu(uintptr_t y, uintptr_t bias, int dtype, int relu);
int fnn_relu_mask_dbias(uintptr_t dy, uintptr_t y, uintptr_t dz, uintptr_t dbias,
                         int dtype, int relu);

/* Optimizer steps over 1-D arrays of P elements, in place. */
int fnn_sgd_step(uintptr_t param, uintptr_t grad, uintptr_t momentum_buffer,
                  int dtype, double lr, double momentum, double dampening,
                  int nesterov, double weight_decay, int first_step);
int fnn_adam_step(uintptr_t param, uintptr_t grad, uintptr_t exp_avg,
                   uintptr_t exp_avg_sq, int dtype, int64_t step, double lr,
                   double beta1, double beta2, double eps, double weight_decay,
                   int decoupled);

/* exp(x) elementwise for x <= 0 (1-D x, y): the kernels' exp, for its test. */
int fnn_exp_nonpositive(uintptr_t x, uintptr_t y, int dtype);
