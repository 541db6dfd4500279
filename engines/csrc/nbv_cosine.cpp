// Fused rendered-feature cosine of the NBV likelihood (engines/render/fast.py, render_cosine):
//   Phi_o(p) = sum_m w[b, p, m] table[bt, idx[b, p, m], o*C:(o+1)*C]  over filled slots,
//   cos[b, o, p] = <Phi_o(p), F(b, :, p)> / max(|Phi_o(p)|, eps),  0 at pixels with no kernel,
// one pass over the slots per pixel into a small [O*C] buffer, never materialising Phi.
// Backward w.r.t. the weights only (the table is a constant here):
//   dcos_o/dPhi_o = (F - cos_o Phi_o / |Phi_o|) / |Phi_o|  (F / eps where |Phi_o| <= eps),
//   dPhi_o/dw_m = table[k_m, o-chunk].
// Loops are split over bodies only (a single body stays on one thread).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

template <typename T>
inline void axpy(T* y, const T* x, T a, int64_t n) {  // y += a x
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

template <typename T>
inline T dot(const T* x, const T* y, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += x[i] * y[i];
  return acc;
}

template <typename T>
inline void axby(T* y, const T* x, T a, const T* z, T b, int64_t n) {  // y = a x + b z
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = a * x[i] + b * z[i];
}

// Phi (O*C) of pixel q; returns false for an empty pixel.
template <typename T>
inline bool accumulate(const int64_t* ia, const T* wa, const T* tb, int64_t q, int64_t M,
                       int64_t OC, T* phi) {
  if (ia[q * M] < 0) return false;
  std::fill(phi, phi + OC, T(0));
  for (int64_t m = 0; m < M && ia[q * M + m] >= 0; ++m) {
    axpy(phi, tb + ia[q * M + m] * OC, wa[q * M + m], OC);
  }
  return true;
}

}  // namespace

// cos [B, O, H, W] from idx/weights [B, H, W, M], table [Bt, K, O*C], features [B, C, H, W].
at::Tensor cosine_forward(at::Tensor idx, at::Tensor weights, at::Tensor table,
                          at::Tensor features, int64_t O, double eps) {
  idx = idx.contiguous();
  weights = weights.to(table.scalar_type()).contiguous();
  table = table.contiguous();
  features = features.to(table.scalar_type()).contiguous();
  const int64_t B = idx.size(0), H = idx.size(1), W = idx.size(2), M = idx.size(3);
  const int64_t Bt = table.size(0), K = table.size(1), OC = table.size(2), C = OC / O;
  const int64_t P = H * W;
  auto cos = at::zeros({B, O, H, W}, table.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "nbv_cosine_forward", [&] {
    const int64_t* ia = idx.data_ptr<int64_t>();
    const scalar_t* wa = weights.data_ptr<scalar_t>();
    const scalar_t* ta = table.data_ptr<scalar_t>();
    const scalar_t* fa = features.data_ptr<scalar_t>();
    scalar_t* ca = cos.data_ptr<scalar_t>();
    const scalar_t e = static_cast<scalar_t>(eps);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> phi(OC), f(C);
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* tb = ta + (Bt == 1 ? 0 : b) * K * OC;
        for (int64_t p = 0; p < P; ++p) {
          if (!accumulate(ia, wa, tb, b * P + p, M, OC, phi.data())) continue;
          for (int64_t c = 0; c < C; ++c) f[c] = fa[(b * C + c) * P + p];
          for (int64_t o = 0; o < O; ++o) {
            const scalar_t* ph = phi.data() + o * C;
            const scalar_t n = std::sqrt(dot(ph, ph, C));
            ca[(b * O + o) * P + p] = dot(ph, f.data(), C) / std::max(n, e);
          }
        }
      }
    });
  });
  return cos;
}

// d weights [B, H, W, M] from grad [B, O, H, W] (0 at empty slots and empty pixels).
at::Tensor cosine_backward(at::Tensor grad, at::Tensor idx, at::Tensor weights, at::Tensor table,
                           at::Tensor features, int64_t O, double eps) {
  idx = idx.contiguous();
  grad = grad.to(table.scalar_type()).contiguous();
  weights = weights.to(table.scalar_type()).contiguous();
  table = table.contiguous();
  features = features.to(table.scalar_type()).contiguous();
  const int64_t B = idx.size(0), H = idx.size(1), W = idx.size(2), M = idx.size(3);
  const int64_t Bt = table.size(0), K = table.size(1), OC = table.size(2), C = OC / O;
  const int64_t P = H * W;
  auto gw = at::zeros({B, H, W, M}, table.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "nbv_cosine_backward", [&] {
    const int64_t* ia = idx.data_ptr<int64_t>();
    const scalar_t* wa = weights.data_ptr<scalar_t>();
    const scalar_t* ta = table.data_ptr<scalar_t>();
    const scalar_t* fa = features.data_ptr<scalar_t>();
    const scalar_t* ga = grad.data_ptr<scalar_t>();
    scalar_t* gwa = gw.data_ptr<scalar_t>();
    const scalar_t e = static_cast<scalar_t>(eps);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> phi(OC), f(C), gphi(OC);
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* tb = ta + (Bt == 1 ? 0 : b) * K * OC;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t q = b * P + p;
          if (!accumulate(ia, wa, tb, q, M, OC, phi.data())) continue;
          for (int64_t c = 0; c < C; ++c) f[c] = fa[(b * C + c) * P + p];
          bool any = false;
          for (int64_t o = 0; o < O; ++o) {
            const scalar_t* ph = phi.data() + o * C;
            scalar_t* gp = gphi.data() + o * C;
            const scalar_t g = ga[(b * O + o) * P + p];
            const scalar_t n = std::sqrt(dot(ph, ph, C));
            if (g == scalar_t(0)) {
              std::fill(gp, gp + C, scalar_t(0));
              continue;
            }
            any = true;
            const scalar_t inv = scalar_t(1) / std::max(n, e);
            const scalar_t cs = dot(ph, f.data(), C) * inv;
            // g (F - cos Phi / n) / n, or g F / eps where the norm is clamped
            const scalar_t a = g * inv, s = n > e ? -g * cs * inv * inv : scalar_t(0);
            axby(gp, f.data(), a, ph, s, C);
          }
          if (!any) continue;
          for (int64_t m = 0; m < M && ia[q * M + m] >= 0; ++m) {
            gwa[q * M + m] = dot(tb + ia[q * M + m] * OC, gphi.data(), OC);
          }
        }
      }
    });
  });
  return gw;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cosine_forward", &cosine_forward, "fused rendered-feature cosine [B, O, H, W]",
        py::call_guard<py::gil_scoped_release>());
  m.def("cosine_backward", &cosine_backward, "grad of cosine_forward w.r.t. the weights",
        py::call_guard<py::gil_scoped_release>());
}
