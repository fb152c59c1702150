#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/cpu/omp_threads.h"
#include "tensor/ops.h"
#ifdef __linux__
#include <sys/mman.h>
#endif

namespace dl::data {

namespace {

using cpu::max_threads;
using cpu::thread_id;

// A new output tensor. Large ones (a 64 x 3 x 224 x 224 batch is 38.5 MB) are advised to use
// transparent huge pages before they are first written: first-touch page faults otherwise cost
// more than the resize itself (measured 34 ms vs 6 ms per such batch on a VM with THP in
// "madvise" mode). Advisory only; nothing changes where THP is off or already "always".
Tensor new_output(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t bytes = static_cast<size_t>(t.numel() * t.element_size());
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  if (bytes >= 4 * kHuge) {
    const auto p = reinterpret_cast<uintptr_t>(t.raw_data());
    const uintptr_t b = (p + kHuge - 1) & ~(kHuge - 1), e = (p + bytes) & ~(kHuge - 1);
    if (e > b) (void)madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
  }
#endif
  return t;
}

// Work below this many output elements runs on one thread.
constexpr int64_t kGrain = 1 << 15;

// Calls f(float{}) or f(double{}) for the dtype. (Not DL_DISPATCH_FLOATING: the kernels below
// hold OpenMP pragmas, which cannot sit inside a macro argument.)
template <typename F>
void dispatch_float(DType dt, const char* op, F&& f) {
  if (dt == DType::Float32) f(float{});
  else if (dt == DType::Float64) f(double{});
  else fail("{}: expected a float32 or float64 tensor, got {}", op, dtype_name(dt));
}

// A contiguous float NCHW tensor, or a dl::Error naming the op and what it got.
Tensor float_nchw(const Tensor& x, const char* op) {
  if (!x.defined()) fail("{}: the input tensor is undefined", op);
  if (!x.is_cpu()) fail("{}: expected a CPU tensor, got one on {}", op, x.device().str());
  if (x.dim() != 4) fail("{}: expected a batch (N, C, H, W), got shape {}", op, shape_str(x.sizes()));
  if (!is_floating(x.dtype()))
    fail("{}: expected a float32 or float64 batch, got {} (convert uint8 images with to_float first)", op,
         dtype_name(x.dtype()));
  return ops::contiguous(x);
}

Tensor int64_labels(const Tensor& labels, int64_t n, const char* op) {
  if (!labels.defined() || labels.dim() != 1 || labels.size(0) != n || labels.dtype() != DType::Int64)
    fail("{}: expected int64 labels of shape [{}], got {}", op, n,
         labels.defined() ? fmt::format("{} {}", dtype_name(labels.dtype()), shape_str(labels.sizes())) : "none");
  return ops::contiguous(labels);
}

// Rolls along dim 0 by one: result[i] = x[i - 1], result[0] = x[N - 1].
Tensor roll_labels(const Tensor& labels) {
  const int64_t n = labels.size(0);
  Tensor out = empty({n}, DType::Int64);
  const int64_t* l = labels.data_ptr<int64_t>();
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) o[i] = l[(i + n - 1) % n];
  return out;
}

// PyTorch's bilinear source index and weights along one axis (align_corners=False): the scale in
// the tensor's type T, the source position in double (ATen's acc_type on the CPU), the weights
// rounded back to T (UpSample.h: area_pixel_compute_scale, compute_source_index_and_lambda).
template <typename T>
void axis_weights(int64_t in, int64_t out, std::vector<int32_t>& i0, std::vector<int32_t>& i1, std::vector<T>& w0,
                  std::vector<T>& w1) {
  i0.resize(out);
  i1.resize(out);
  w0.resize(out);
  w1.resize(out);
  const T scale = static_cast<T>(in) / static_cast<T>(out);
  for (int64_t o = 0; o < out; ++o) {
    if (in == out) {
      i0[o] = i1[o] = static_cast<int32_t>(o);
      w0[o] = T(1);
      w1[o] = T(0);
      continue;
    }
    double src = static_cast<double>(scale) * (static_cast<double>(o) + 0.5) - 0.5;
    if (src < 0.0) src = 0.0;
    const auto a = static_cast<int64_t>(src);
    i0[o] = static_cast<int32_t>(a);
    i1[o] = static_cast<int32_t>(a + (a < in - 1 ? 1 : 0));
    const auto l1 = static_cast<T>(src - static_cast<double>(a));
    w1[o] = l1;
    w0[o] = T(1) - l1;
  }
}

template <typename T>
void resize_planes(const T* in, T* out, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow) {
  std::vector<int32_t> x0, x1, y0, y1;
  std::vector<T> xw0, xw1, yw0, yw1;
  axis_weights<T>(iw, ow, x0, x1, xw0, xw1);
  axis_weights<T>(ih, oh, y0, y1, yw0, yw1);
  const int nt = planes * oh * ow > kGrain ? max_threads() : 1;
  std::vector<T> tmp(static_cast<size_t>(nt) * ih * ow);
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t p = 0; p < planes; ++p) {
    T* t = tmp.data() + static_cast<size_t>(thread_id()) * ih * ow;
    const T* src = in + p * ih * iw;
    for (int64_t r = 0; r < ih; ++r) {
      const T* row = src + r * iw;
      T* tr = t + r * ow;
      for (int64_t x = 0; x < ow; ++x) {
        T v = row[x0[x]] * xw0[x];
        v += row[x1[x]] * xw1[x];
        tr[x] = v;
      }
    }
    T* dst = out + p * oh * ow;
    for (int64_t y = 0; y < oh; ++y) {
      const T* t0 = t + y0[y] * ow;
      const T* t1 = t + y1[y] * ow;
      const T h0 = yw0[y], h1 = yw1[y];
      T* d = dst + y * ow;
#pragma omp simd
      for (int64_t x = 0; x < ow; ++x) {
        T v = t0[x] * h0;
        v += t1[x] * h1;
        d[x] = v;
      }
    }
  }
}

}  // namespace

// ---- deterministic transforms -------------------------------------------------------------------

Tensor to_float(const Tensor& images) {
  if (!images.defined() || !images.is_cpu() || images.dtype() != DType::UInt8 || (images.dim() != 3 && images.dim() != 4))
    fail("to_float: expected uint8 images (N, H, W) or (N, C, H, W) on the CPU, got {}",
         images.defined() ? fmt::format("{} {}", dtype_name(images.dtype()), shape_str(images.sizes())) : "none");
  Tensor x = ops::contiguous(images);
  Shape s = x.sizes();
  if (s.size() == 3) s.insert(s.begin() + 1, 1);
  Tensor out = new_output(s, DType::Float32);
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v) / 255.0f;
  const uint8_t* src = x.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > kGrain)
  for (int64_t i = 0; i < n; ++i) dst[i] = lut[src[i]];
  return out;
}

Tensor normalize(const Tensor& input, const std::vector<double>& mean, const std::vector<double>& std) {
  Tensor x = float_nchw(input, "normalize");
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  auto ok_len = [&](size_t n) { return n == 1 || static_cast<int64_t>(n) == C; };
  if (!ok_len(mean.size()) || !ok_len(std.size()))
    fail("normalize: expected 1 or {} mean and std values for {} channels, got {} and {}", C, C, mean.size(), std.size());
  for (double s : std)
    if (!(s > 0.0) || !std::isfinite(s)) fail("normalize: every std must be positive and finite, got {}", s);
  Tensor out = new_output(x.sizes(), x.dtype());
  dispatch_float(x.dtype(), "normalize", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    const scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
#pragma omp parallel for schedule(static) if (N * C * HW > kGrain)
    for (int64_t p = 0; p < N * C; ++p) {
      const int64_t c = p % C;
      // torchvision: tensor.sub_(mean).div_(std) with mean and std in the tensor's dtype
      const auto m = static_cast<scalar_t>(mean.size() == 1 ? mean[0] : mean[c]);
      const auto sd = static_cast<scalar_t>(std.size() == 1 ? std[0] : std[c]);
      const scalar_t* s = src + p * HW;
      scalar_t* d = dst + p * HW;
      for (int64_t i = 0; i < HW; ++i) d[i] = (s[i] - m) / sd;
    }
  });
  return out;
}

Tensor gray_to_rgb(const Tensor& input) {
  Tensor x = float_nchw(input, "gray_to_rgb");
  if (x.size(1) != 1) fail("gray_to_rgb: expected one channel, got shape {}", shape_str(x.sizes()));
  const int64_t N = x.size(0), HW = x.size(2) * x.size(3);
  Tensor out = new_output({N, 3, x.size(2), x.size(3)}, x.dtype());
  const int64_t es = x.element_size();
  const auto* src = static_cast<const char*>(x.raw_data());
  auto* dst = static_cast<char*>(out.raw_data());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < 3; ++c) std::memcpy(dst + ((n * 3 + c) * HW) * es, src + n * HW * es, HW * es);
  return out;
}

Tensor resize_bilinear(const Tensor& input, int64_t out_h, int64_t out_w) {
  Tensor x = float_nchw(input, "resize_bilinear");
  if (out_h < 1 || out_w < 1 || out_h > (1 << 20) || out_w > (1 << 20))
    fail("resize_bilinear: output size must be 1 to 2^20 per side, got {}x{}", out_h, out_w);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  if (H < 1 || W < 1) fail("resize_bilinear: cannot resize an empty image, got shape {}", shape_str(x.sizes()));
  Tensor out = new_output({N, C, out_h, out_w}, x.dtype());
  dispatch_float(x.dtype(), "resize_bilinear", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    resize_planes<scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), N * C, H, W, out_h, out_w);
  });
  return out;
}

Tensor pad(const Tensor& input, int64_t left, int64_t top, int64_t right, int64_t bottom, double fill) {
  Tensor x = float_nchw(input, "pad");
  if (left < 0 || top < 0 || right < 0 || bottom < 0)
    fail("pad: padding must be non-negative, got left {} top {} right {} bottom {}", left, top, right, bottom);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = H + top + bottom, OW = W + left + right;
  Tensor out = new_output({N, C, OH, OW}, x.dtype());
  dispatch_float(x.dtype(), "pad", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    const scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const auto f = static_cast<scalar_t>(fill);
    for (int64_t p = 0; p < N * C; ++p) {
      scalar_t* d = dst + p * OH * OW;
      std::fill(d, d + OH * OW, f);
      for (int64_t y = 0; y < H; ++y) std::copy_n(src + (p * H + y) * W, W, d + (y + top) * OW + left);
    }
  });
  return out;
}

// ---- random transforms ---------------------------------------------------------------------------

Tensor random_crop(const Tensor& input, int64_t out_h, int64_t out_w, int64_t padding, Generator& gen, double fill) {
  Tensor x = float_nchw(input, "random_crop");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  if (padding < 0) fail("random_crop: padding must be non-negative, got {}", padding);
  const int64_t PH = H + 2 * padding, PW = W + 2 * padding;
  if (out_h < 1 || out_w < 1 || out_h > PH || out_w > PW)
    fail("random_crop: crop size {}x{} must be positive and fit the padded image {}x{}", out_h, out_w, PH, PW);
  Tensor out = new_output({N, C, out_h, out_w}, x.dtype());
  dispatch_float(x.dtype(), "random_crop", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    const scalar_t* src = x.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const auto f = static_cast<scalar_t>(fill);
    for (int64_t n = 0; n < N; ++n) {
      // window top-left in padded coordinates, then shifted back into the source
      const int64_t i = (PH == out_h ? 0 : static_cast<int64_t>(gen.below(PH - out_h + 1))) - padding;
      const int64_t j = (PW == out_w ? 0 : static_cast<int64_t>(gen.below(PW - out_w + 1))) - padding;
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* s = src + (n * C + c) * H * W;
        scalar_t* d = dst + (n * C + c) * out_h * out_w;
        for (int64_t y = 0; y < out_h; ++y) {
          const int64_t sy = i + y;
          for (int64_t xo = 0; xo < out_w; ++xo) {
            const int64_t sx = j + xo;
            d[y * out_w + xo] = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? s[sy * W + sx] : f;
          }
        }
      }
    }
  });
  return out;
}

Tensor random_horizontal_flip(const Tensor& input, double p, Generator& gen) {
  Tensor x = float_nchw(input, "random_horizontal_flip");
  if (!(p >= 0.0 && p <= 1.0)) fail("random_horizontal_flip: p must be in [0, 1], got {}", p);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  Tensor out = ops::clone(x);
  dispatch_float(x.dtype(), "random_horizontal_flip", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    scalar_t* d = out.data_ptr<scalar_t>();
    for (int64_t n = 0; n < N; ++n) {
      if (!(gen.uniform() < p)) continue;
      for (int64_t r = 0; r < C * H; ++r) std::reverse(d + (n * C * H + r) * W, d + (n * C * H + r + 1) * W);
    }
  });
  return out;
}

Tensor random_erasing(const Tensor& input, const RandomErasingOptions& o, Generator& gen) {
  Tensor x = float_nchw(input, "random_erasing");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  if (!(o.p >= 0.0 && o.p <= 1.0)) fail("random_erasing: p must be in [0, 1], got {}", o.p);
  if (!(o.scale[0] >= 0.0 && o.scale[0] <= o.scale[1] && o.scale[1] <= 1.0))
    fail("random_erasing: scale must be (min, max) within [0, 1], got ({}, {})", o.scale[0], o.scale[1]);
  if (!(o.ratio[0] > 0.0 && o.ratio[0] <= o.ratio[1]))
    fail("random_erasing: ratio must be (min, max) with 0 < min <= max, got ({}, {})", o.ratio[0], o.ratio[1]);
  if (!o.random_value && o.value.size() != 1 && static_cast<int64_t>(o.value.size()) != C)
    fail("random_erasing: expected 1 or {} fill values for {} channels, got {}", C, C, o.value.size());
  Tensor out = ops::clone(x);
  const double area = static_cast<double>(H * W);
  const double lr0 = std::log(o.ratio[0]), lr1 = std::log(o.ratio[1]);
  dispatch_float(x.dtype(), "random_erasing", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    scalar_t* d = out.data_ptr<scalar_t>();
    for (int64_t n = 0; n < N; ++n) {
      if (!(gen.uniform() < o.p)) continue;
      for (int attempt = 0; attempt < 10; ++attempt) {
        const double erase_area = area * (o.scale[0] + (o.scale[1] - o.scale[0]) * gen.uniform());
        const double aspect = std::exp(lr0 + (lr1 - lr0) * gen.uniform());
        // Python's round(): half to even, which nearbyint does in the default rounding mode
        const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(erase_area * aspect)));
        const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(erase_area / aspect)));
        if (!(h < H && w < W)) continue;
        const auto i = static_cast<int64_t>(gen.below(static_cast<uint64_t>(H - h + 1)));
        const auto j = static_cast<int64_t>(gen.below(static_cast<uint64_t>(W - w + 1)));
        for (int64_t c = 0; c < C; ++c) {
          const double v = o.value.size() == 1 ? o.value[0] : (o.random_value ? 0.0 : o.value[c]);
          for (int64_t y = i; y < i + h; ++y)
            for (int64_t xx = j; xx < j + w; ++xx)
              d[((n * C + c) * H + y) * W + xx] = static_cast<scalar_t>(o.random_value ? gen.normal() : v);
        }
        break;
      }
    }
  });
  return out;
}

// ---- batch mixing ------------------------------------------------------------------------------------

namespace {
double sample_gamma(double a, Generator& gen) {
  if (a < 1.0) {
    double u = gen.uniform();
    while (u <= 0.0) u = gen.uniform();
    return sample_gamma(a + 1.0, gen) * std::pow(u, 1.0 / a);
  }
  const double d = a - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double z, v;
    do {
      z = gen.normal();
      v = 1.0 + c * z;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = gen.uniform();
    if (u < 1.0 - 0.0331 * z * z * z * z) return d * v;
    if (std::log(u) < 0.5 * z * z + d * (1.0 - v + std::log(v))) return d * v;
  }
}
}  // namespace

double sample_beta(double a, double b, Generator& gen) {
  if (!(a > 0.0 && b > 0.0 && std::isfinite(a) && std::isfinite(b)))
    fail("sample_beta: parameters must be positive and finite, got ({}, {})", a, b);
  const double x = sample_gamma(a, gen), y = sample_gamma(b, gen);
  if (x + y <= 0.0) return gen.uniform() < a / (a + b) ? 1.0 : 0.0;  // both underflowed (tiny a, b)
  return x / (x + y);
}

Tensor MixedBatch::soft_targets(int64_t num_classes) const {
  const int64_t n = targets_a.size(0);
  Tensor out = zeros({n, num_classes}, DType::Float32);
  float* o = out.data_ptr<float>();
  const int64_t* a = targets_a.data_ptr<int64_t>();
  const int64_t* b = targets_b.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (a[i] < 0 || a[i] >= num_classes || b[i] < 0 || b[i] >= num_classes)
      fail("MixedBatch::soft_targets: label {} or {} of sample {} is outside [0, {})", a[i], b[i], i, num_classes);
    o[i * num_classes + a[i]] += static_cast<float>(lambda);
    o[i * num_classes + b[i]] += static_cast<float>(1.0 - lambda);
  }
  return out;
}

MixedBatch mixup(const Tensor& images, const Tensor& labels, double alpha, Generator& gen) {
  Tensor x = float_nchw(images, "mixup");
  const int64_t N = x.size(0), per = x.numel() / std::max<int64_t>(N, 1);
  MixedBatch m;
  m.targets_a = int64_labels(labels, N, "mixup");
  if (!(alpha > 0.0)) fail("mixup: alpha must be positive, got {}", alpha);
  m.lambda = sample_beta(alpha, alpha, gen);
  m.targets_b = roll_labels(m.targets_a);
  m.images = empty(x.sizes(), x.dtype());
  dispatch_float(x.dtype(), "mixup", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    const scalar_t* s = x.data_ptr<scalar_t>();
    scalar_t* d = m.images.data_ptr<scalar_t>();
    const auto lam = static_cast<scalar_t>(m.lambda), rest = static_cast<scalar_t>(1.0 - m.lambda);
    for (int64_t n = 0; n < N; ++n) {
      const scalar_t* a = s + n * per;
      const scalar_t* b = s + ((n + N - 1) % N) * per;
      // torchvision: x.roll(1, 0).mul_(1 - lam).add_(x.mul(lam))
      for (int64_t i = 0; i < per; ++i) d[n * per + i] = b[i] * rest + a[i] * lam;
    }
  });
  return m;
}

MixedBatch cutmix(const Tensor& images, const Tensor& labels, double alpha, Generator& gen) {
  Tensor x = float_nchw(images, "cutmix");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  MixedBatch m;
  m.targets_a = int64_labels(labels, N, "cutmix");
  if (!(alpha > 0.0)) fail("cutmix: alpha must be positive, got {}", alpha);
  if (H < 1 || W < 1) fail("cutmix: empty images, shape {}", shape_str(x.sizes()));
  const double lam = sample_beta(alpha, alpha, gen);
  const auto rx = static_cast<int64_t>(gen.below(static_cast<uint64_t>(W)));
  const auto ry = static_cast<int64_t>(gen.below(static_cast<uint64_t>(H)));
  const double r = 0.5 * std::sqrt(1.0 - lam);
  const auto rw = static_cast<int64_t>(r * static_cast<double>(W));
  const auto rh = static_cast<int64_t>(r * static_cast<double>(H));
  const int64_t x1 = std::max<int64_t>(rx - rw, 0), y1 = std::max<int64_t>(ry - rh, 0);
  const int64_t x2 = std::min<int64_t>(rx + rw, W), y2 = std::min<int64_t>(ry + rh, H);
  m.lambda = 1.0 - static_cast<double>((x2 - x1) * (y2 - y1)) / static_cast<double>(W * H);
  m.targets_b = roll_labels(m.targets_a);
  m.images = ops::clone(x);
  dispatch_float(x.dtype(), "cutmix", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    const scalar_t* s = x.data_ptr<scalar_t>();
    scalar_t* d = m.images.data_ptr<scalar_t>();
    for (int64_t n = 0; n < N; ++n) {
      const int64_t partner = (n + N - 1) % N;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = y1; y < y2; ++y)
          for (int64_t xx = x1; xx < x2; ++xx)
            d[((n * C + c) * H + y) * W + xx] = s[((partner * C + c) * H + y) * W + xx];
    }
  });
  return m;
}

// ---- the fused ResNet input path ---------------------------------------------------------------

BilinearAxis bilinear_axis(int64_t in, int64_t out) {
  if (in < 1 || out < 1 || in > (1 << 20) || out > (1 << 20))
    fail("bilinear_axis: sizes must be 1 to 2^20, got {} -> {}", in, out);
  BilinearAxis a;
  a.in = in;
  a.out = out;
  axis_weights<float>(in, out, a.i0, a.i1, a.w0, a.w1);
  return a;
}

BilinearPlan make_bilinear_plan(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
  return {bilinear_axis(in_h, out_h), bilinear_axis(in_w, out_w)};
}

Tensor resnet_input(const Tensor& images, const BilinearPlan& plan, const std::array<double, 3>& mean,
                    const std::array<double, 3>& std, int threads) {
  if (!images.defined() || !images.is_cpu() || images.dtype() != DType::UInt8 ||
      !(images.dim() == 3 || (images.dim() == 4 && images.size(1) == 1)))
    fail("resnet_input: expected uint8 grayscale images (N, H, W) or (N, 1, H, W) on the CPU, got {}",
         images.defined() ? fmt::format("{} {}", dtype_name(images.dtype()), shape_str(images.sizes())) : "none");
  const int64_t N = images.size(0), H = images.size(-2), W = images.size(-1);
  if (H != plan.rows.in || W != plan.cols.in)
    fail("resnet_input: the plan resizes {}x{} images, got {}x{}", plan.rows.in, plan.cols.in, H, W);
  for (double s : std)
    if (!(s > 0.0) || !std::isfinite(s)) fail("resnet_input: every std must be positive and finite, got {}", s);
  Tensor x = ops::contiguous(images);
  const int64_t OH = plan.rows.out, OW = plan.cols.out;
  Tensor out = new_output({N, 3, OH, OW}, DType::Float32);
  if (N == 0) return out;

  float lut[256];  // PyTorch divides: x.float() / 255
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v) / 255.0f;
  float m[3], inv[3];
  for (int c = 0; c < 3; ++c) {
    m[c] = static_cast<float>(mean[c]);
    inv[c] = 1.0f / static_cast<float>(std[c]);
  }
  const int nt = std::max(1, std::min<int>(threads > 0 ? threads : max_threads(), static_cast<int>(N)));
  std::vector<float> tmp(static_cast<size_t>(nt) * H * OW);
  const uint8_t* src_all = x.data_ptr<uint8_t>();
  float* out_all = out.data_ptr<float>();
  const int32_t *xi0 = plan.cols.i0.data(), *xi1 = plan.cols.i1.data();
  const float *xw0 = plan.cols.w0.data(), *xw1 = plan.cols.w1.data();

#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t n = 0; n < N; ++n) {
    float* t = tmp.data() + static_cast<size_t>(thread_id()) * H * OW;
    const uint8_t* src = src_all + n * H * W;
    // horizontal pass over every source row: (H, W) uint8 -> (H, OW) float in [0, 1]
    for (int64_t r = 0; r < H; ++r) {
      const uint8_t* row = src + r * W;
      float* tr = t + r * OW;
      for (int64_t c = 0; c < OW; ++c) {
        float v = lut[row[xi0[c]]] * xw0[c];
        v += lut[row[xi1[c]]] * xw1[c];
        tr[c] = v;
      }
    }
    // vertical pass, then the three normalised channels
    float* o0 = out_all + n * 3 * OH * OW;
    float* o1 = o0 + OH * OW;
    float* o2 = o1 + OH * OW;
    for (int64_t y = 0; y < OH; ++y) {
      const float* t0 = t + plan.rows.i0[y] * OW;
      const float* t1 = t + plan.rows.i1[y] * OW;
      const float h0 = plan.rows.w0[y], h1 = plan.rows.w1[y];
      float* d0 = o0 + y * OW;
      float* d1 = o1 + y * OW;
      float* d2 = o2 + y * OW;
#pragma omp simd
      for (int64_t c = 0; c < OW; ++c) {
        float v = t0[c] * h0;
        v += t1[c] * h1;
        d0[c] = (v - m[0]) * inv[0];
        d1[c] = (v - m[1]) * inv[1];
        d2[c] = (v - m[2]) * inv[2];
      }
    }
  }
  return out;
}

Tensor resnet_input(const Tensor& images, int64_t size, const std::array<double, 3>& mean,
                    const std::array<double, 3>& std, int threads) {
  if (!images.defined() || images.dim() < 2) fail("resnet_input: expected images (N, H, W) or (N, 1, H, W)");
  return resnet_input(images, make_bilinear_plan(images.size(-2), images.size(-1), size, size), mean, std, threads);
}

// ---- transform objects -----------------------------------------------------------------------------

namespace transforms {
namespace {

class FnTransform : public Transform {
 public:
  FnTransform(std::string name, std::function<Tensor(const Tensor&, Generator&)> fn)
      : name_(std::move(name)), fn_(std::move(fn)) {}
  Tensor apply(const Tensor& batch, Generator& gen) const override { return fn_(batch, gen); }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  std::function<Tensor(const Tensor&, Generator&)> fn_;
};

std::string list(const std::vector<double>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); }

}  // namespace

TransformPtr Lambda(std::string name, std::function<Tensor(const Tensor&, Generator&)> fn) {
  if (!fn) fail("transforms::Lambda('{}'): the function is empty", name);
  return std::make_shared<FnTransform>(std::move(name), std::move(fn));
}

TransformPtr Compose(std::vector<TransformPtr> steps) {
  std::vector<std::string> names;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (!steps[i]) fail("transforms::Compose: step {} is null", i);
    names.push_back(steps[i]->name());
  }
  return Lambda(fmt::format("Compose({})", fmt::join(names, ", ")), [steps = std::move(steps)](const Tensor& x, Generator& g) {
    Tensor y = x;
    for (const auto& s : steps) y = s->apply(y, g);
    return y;
  });
}

TransformPtr ToFloat() {
  return Lambda("ToFloat()", [](const Tensor& x, Generator&) { return to_float(x); });
}

TransformPtr Normalize(std::vector<double> mean, std::vector<double> std) {
  return Lambda(fmt::format("Normalize(mean={}, std={})", list(mean), list(std)),
                [mean, std](const Tensor& x, Generator&) { return normalize(x, mean, std); });
}

TransformPtr GrayToRgb() {
  return Lambda("GrayToRgb()", [](const Tensor& x, Generator&) { return gray_to_rgb(x); });
}

TransformPtr Resize(int64_t out_h, int64_t out_w) {
  return Lambda(fmt::format("Resize({}, {}, bilinear)", out_h, out_w),
                [=](const Tensor& x, Generator&) { return resize_bilinear(x, out_h, out_w); });
}

TransformPtr Pad(int64_t padding, double fill) {
  return Lambda(fmt::format("Pad({}, fill={})", padding, fill),
                [=](const Tensor& x, Generator&) { return pad(x, padding, padding, padding, padding, fill); });
}

TransformPtr RandomCrop(int64_t out_h, int64_t out_w, int64_t padding, double fill) {
  return Lambda(fmt::format("RandomCrop({}, {}, padding={}, fill={})", out_h, out_w, padding, fill),
                [=](const Tensor& x, Generator& g) { return random_crop(x, out_h, out_w, padding, g, fill); });
}

TransformPtr RandomHorizontalFlip(double p) {
  return Lambda(fmt::format("RandomHorizontalFlip(p={})", p),
                [=](const Tensor& x, Generator& g) { return random_horizontal_flip(x, p, g); });
}

TransformPtr RandomErasing(RandomErasingOptions o) {
  std::string name = fmt::format("RandomErasing(p={}, scale=({}, {}), ratio=({}, {}), value={})", o.p, o.scale[0],
                                 o.scale[1], o.ratio[0], o.ratio[1], o.random_value ? "random" : list(o.value));
  return Lambda(std::move(name), [o](const Tensor& x, Generator& g) { return random_erasing(x, o, g); });
}

TransformPtr ResnetInput(int64_t size, int64_t in_h, int64_t in_w, std::array<double, 3> mean,
                         std::array<double, 3> std, int threads) {
  auto plan = std::make_shared<const BilinearPlan>(make_bilinear_plan(in_h, in_w, size, size));
  std::string name = fmt::format("ResnetInput(size={}, mean=[{}], std=[{}])", size, fmt::join(mean, ", "),
                                 fmt::join(std, ", "));
  return Lambda(std::move(name), [=](const Tensor& x, Generator&) {
    if (x.defined() && x.dim() >= 2 && x.size(-2) == plan->rows.in && x.size(-1) == plan->cols.in)
      return resnet_input(x, *plan, mean, std, threads);
    return resnet_input(x, size, mean, std, threads);
  });
}

}  // namespace transforms

}  // namespace dl::data
