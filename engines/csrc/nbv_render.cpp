// Fast CPU kernels of the NBV ray-Gaussian renderer (engines/render/fast.py).
//
// Same equations as engines/render/reference.py (VoGE closest approach as used by 3DNBF):
//   l_k = mu_k^T A_k r / (r^T A_k r),  act_k = (mu_k - l_k r)^T A_k (mu_k - l_k r),  A_k = a_k I,
//   candidates act_k < tau, the M nearest by l_k front to back,
//   S_m = sum_k e^{-act_k} phi_mk,  phi_mk = 0.5 [1 + erf((l_m - l_k) sqrt(dsd_k))],
//   w_m = exp(-S_m) e^{-act_m} / e^{-0.5}.
// Selection culls each kernel to the pixels whose ray can meet its sphere of radius
// sqrt(tau / a_k) (row by row, see select_body) and keeps the M nearest per pixel by insertion.
// Geometry is in double. The pair terms phi use std::erf for double inputs and, for float inputs,
// a vectorised float erf (Abramowitz & Stegun 7.1.26, |error| < 3e-7). The backward pass is
// hand written and recomputes each pixel's slots (storing them measured no faster).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

namespace {

constexpr double kInvSqrtPi = 0.56418958354775628695;  // 1 / sqrt(pi)
// Parallel loops split over bodies only (grain: one body's pixels): a single render stays on
// one thread, which avoids waiting for a busy second core on a shared machine.

struct Slot {
  double l, act, e, sd, dr;  // depth, activation, e^{-act}, sqrt(dsd), (mu - l r).r / r.r
  double d[3];               // mu - l r
};

template <typename scalar_t>
inline void kernel_ray(const scalar_t* mu, const scalar_t* r, double a, Slot& s) {
  const double rx = r[0], ry = r[1], rz = r[2];
  const double rr = rx * rx + ry * ry + rz * rz;
  const double dsd = a * rr;
  s.l = a * (mu[0] * rx + mu[1] * ry + mu[2] * rz) / dsd;
  s.d[0] = mu[0] - s.l * rx;
  s.d[1] = mu[1] - s.l * ry;
  s.d[2] = mu[2] - s.l * rz;
  s.act = a * (s.d[0] * s.d[0] + s.d[1] * s.d[1] + s.d[2] * s.d[2]);
  s.sd = std::sqrt(dsd);
  s.dr = (s.d[0] * rx + s.d[1] * ry + s.d[2] * rz) / rr;
}

// phi = 0.5 [1 + erf(z)] and dphi = exp(-z^2) / sqrt(pi) for n values of z.
inline void pair_terms(const double* z, double* phi, double* dphi, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = z[i];
    phi[i] = x > 6.0 ? 1.0 : (x < -6.0 ? 0.0 : 0.5 * (1.0 + std::erf(x)));
    dphi[i] = kInvSqrtPi * std::exp(-x * x);
  }
}

// Float version, vectorised (kept out of line so the simd loop is not lost when inlined):
// erf from Abramowitz & Stegun 7.1.26 (|error| < 3e-7), exp(-z^2) from Cephes' expf polynomial.
__attribute__((noinline)) void pair_terms(const float* z, float* phi, float* dphi, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float x = z[i];
    const float ax = std::fabs(x);
    const float t = 1.0f / (1.0f + 0.3275911f * ax);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    p = p * t;
    // exp(v), v = -min(|x|, 9.3)^2 >= -86.5, then 0 beyond |x| = 9.3 (branch-free selects)
    const float over = ax > 9.3f ? 1.0f : 0.0f;
    const float axc = ax - (ax - 9.3f) * over;
    const float v = -axc * axc;
    const float vn = (v * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(v / ln 2)
    const float r = (v - vn * 0.693359375f) + vn * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(vn) + 127) * 8388608;  // 2^vn
    float scale;
    std::memcpy(&scale, &bits, sizeof(float));
    const float ex = (1.0f - over) * (y * scale);
    const float half_erfc = 0.5f * p * ex;  // 0.5 (1 - erf(|x|))
    phi[i] = std::copysign(0.5f - half_erfc, x) + 0.5f;
    dphi[i] = static_cast<float>(kInvSqrtPi) * ex;
  }
}


// Pixel range [lo, hi] of the centres inside [pmin, pmax] (projected coordinates) plus kPad.
constexpr double kPad = 0.05;  // px; covers float rounding of rays (~1e-4 px at 30 m) with room
inline void pixel_range(double pmin, double pmax, int64_t n, int64_t& lo, int64_t& hi) {
  pmin = std::max(pmin - kPad, -1.0);
  pmax = std::min(pmax + kPad, static_cast<double>(n));
  lo = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(pmin)));
  hi = std::min<int64_t>(n - 1, static_cast<int64_t>(std::floor(pmax)));
}

// Projected range, along one image axis, of the box [x - hx, x + hx] x [z - hz, z + hz] (the
// axis coordinate x, depth z) seen by p = f x / z + c; false if the box straddles z = 0.
inline bool project_box(double x, double hx, double z, double hz, double f, double c,
                        double& pmin, double& pmax) {
  if (!(z - hz > 0.0 || z + hz < 0.0)) return false;
  pmin = std::numeric_limits<double>::max();
  pmax = -pmin;
  for (double zz : {z - hz, z + hz}) {
    for (double xx : {x - hx, x + hx}) {
      const double p = f * xx / zz + c;
      pmin = std::min(pmin, p);
      pmax = std::max(pmax, p);
    }
  }
  return true;
}

// Per-pixel selection for one body: depth-sorted kernel ids in idx[p * M + m] (-1 if empty).
// A kernel can only be a candidate where the pixel's ray meets its sphere of radius
// sqrt(tau / a): rows whose ray plane (y = s z) meets the sphere, and on each such row the
// columns that see the circle cut from the sphere by that plane (bounded by its box).
template <typename scalar_t>
void select_body(const scalar_t* mu, const scalar_t* rays, const double* intr,
                 const scalar_t* prec, int64_t K, int64_t H, int64_t W, int64_t M, double tau,
                 int64_t* idx) {
  const double fx = intr[0], fy = intr[1], cx = intr[2], cy = intr[3];
  std::vector<double> depth(H * W * M);
  std::vector<int64_t> count(H * W, 0);
  std::fill(idx, idx + H * W * M, int64_t(-1));
  for (int64_t k = 0; k < K; ++k) {
    const scalar_t* m = mu + 3 * k;
    const double mx = m[0], my = m[1], mz = m[2];
    const double a = prec[k];
    // sphere radius with a margin for the rounding of rays and centres
    const double R = std::sqrt(tau / a) * (1.0 + 1e-4) + 1e-6 * std::abs(mz);
    int64_t i0 = 0, i1 = H - 1;
    double vmin, vmax;
    if (project_box(my, R, mz, R, fy, cy, vmin, vmax)) pixel_range(vmin, vmax, H, i0, i1);
    for (int64_t i = i0; i <= i1; ++i) {
      int64_t j0 = 0, j1 = W - 1;
      const double s = (static_cast<double>(i) - cy) / fy;
      const double nrm = std::sqrt(1.0 + s * s);
      const double dist = (my - s * mz) / nrm;  // signed distance to the row's ray plane
      if (std::abs(dist) >= R) continue;
      const double rc = std::sqrt(R * R - dist * dist);  // radius of the cut circle
      // circle centre mu - dist n, n = (0, 1, -s) / nrm; in-plane axes (1, 0, 0), (0, s, 1) / nrm
      const double pz = mz + dist * s / nrm;
      double umin, umax;
      if (project_box(mx, rc, pz, rc / nrm, fx, cx, umin, umax)) {
        pixel_range(umin, umax, W, j0, j1);
      }
      for (int64_t j = j0; j <= j1; ++j) {
        const int64_t p = i * W + j;
        const scalar_t* r = rays + 3 * p;
        const double rx = r[0], ry = r[1], rz = r[2];
        const double l = a * (m[0] * rx + m[1] * ry + m[2] * rz) / (a * (rx * rx + ry * ry + rz * rz));
        const double dx = m[0] - l * rx, dy = m[1] - l * ry, dz = m[2] - l * rz;
        if (!(a * (dx * dx + dy * dy + dz * dz) < tau)) continue;
        double* lp = depth.data() + p * M;
        int64_t* ip = idx + p * M;
        const int64_t c = count[p];
        if (c == M && !(l < lp[M - 1])) continue;
        int64_t pos = c < M ? c : M - 1;
        while (pos > 0 && lp[pos - 1] > l) {
          lp[pos] = lp[pos - 1];
          ip[pos] = ip[pos - 1];
          --pos;
        }
        lp[pos] = l;
        ip[pos] = k;
        if (c < M) count[p] = c + 1;
      }
    }
  }
}

// Per-pixel scratch: slots, pair tables [M * M] (phi_mk at m * n + k), weights.
template <typename scalar_t>
struct Pixel {
  std::vector<Slot> s;
  std::vector<scalar_t> z, phi, dphi, hphi, hdphi;
  std::vector<double> w;
  int64_t n = 0;
  explicit Pixel(int64_t M)
      : s(M), z(M * M), phi(M * M), dphi(M * M), hphi(M * M), hdphi(M * M), w(M) {}

  // Slots, pair terms and weights of one pixel; returns the number of filled slots.
  int64_t eval(const scalar_t* mu, const scalar_t* r, const scalar_t* prec, const int64_t* ip,
               int64_t M) {
    n = 0;
    while (n < M && ip[n] >= 0) {
      kernel_ray(mu + 3 * ip[n], r, static_cast<double>(prec[ip[n]]), s[n]);
      s[n].e = std::exp(-s[n].act);
      ++n;
    }
    if (n == 0) return 0;
    bool same_sd = true;
    for (int64_t m = 1; m < n; ++m) same_sd = same_sd && s[m].sd == s[0].sd;
    if (same_sd) {  // phi_km = 1 - phi_mk, dphi_km = dphi_mk: evaluate the m < k half only
      int64_t c = 0;
      for (int64_t m = 0; m < n; ++m) {
        for (int64_t k = m + 1; k < n; ++k) {
          z[c++] = static_cast<scalar_t>((s[m].l - s[k].l) * s[k].sd);
        }
      }
      pair_terms(z.data(), hphi.data(), hdphi.data(), c);
      c = 0;
      for (int64_t m = 0; m < n; ++m) {
        phi[m * n + m] = scalar_t(0.5);
        dphi[m * n + m] = static_cast<scalar_t>(kInvSqrtPi);
        for (int64_t k = m + 1; k < n; ++k, ++c) {
          phi[m * n + k] = hphi[c];
          phi[k * n + m] = scalar_t(1) - hphi[c];
          dphi[m * n + k] = dphi[k * n + m] = hdphi[c];
        }
      }
    } else {
      for (int64_t m = 0; m < n; ++m) {
        for (int64_t k = 0; k < n; ++k) {
          z[m * n + k] = static_cast<scalar_t>((s[m].l - s[k].l) * s[k].sd);
        }
      }
      pair_terms(z.data(), phi.data(), dphi.data(), n * n);
    }
    for (int64_t m = 0; m < n; ++m) {
      double S = 0.0;
      for (int64_t k = 0; k < n; ++k) S += s[k].e * static_cast<double>(phi[m * n + k]);
      w[m] = std::exp(-S) * s[m].e / std::exp(-0.5);
    }
    return n;
  }
};

// Returns (idx [B, H, W, M], weights [B, H, W, M], visibility [B, K], wsum [B, H, W]), with
// wsum = sum_m w_m (the silhouette before clamping).
std::vector<torch::Tensor> forward(torch::Tensor centres, torch::Tensor rays, torch::Tensor intr,
                                   torch::Tensor prec, int64_t M, double tau) {
  TORCH_CHECK(centres.dim() == 3 && centres.size(2) == 3, "centres [B, K, 3]");
  TORCH_CHECK(rays.dim() == 4 && rays.size(3) == 3, "rays [Bc, H, W, 3]");
  centres = centres.contiguous();
  rays = rays.to(centres.scalar_type()).contiguous();
  prec = prec.to(centres.scalar_type()).contiguous();
  intr = intr.to(torch::kFloat64).contiguous();
  const int64_t B = centres.size(0), K = centres.size(1);
  const int64_t Bc = rays.size(0), H = rays.size(1), W = rays.size(2), P = H * W;
  auto idx = torch::empty({B, H, W, M}, centres.options().dtype(torch::kInt64));
  auto weights = torch::empty({B, H, W, M}, centres.options());
  auto vis = torch::zeros({B, K}, centres.options().dtype(torch::kBool));
  auto wsum = torch::empty({B, H, W}, centres.options());
  AT_DISPATCH_FLOATING_TYPES(centres.scalar_type(), "nbv_render_forward", [&] {
    const scalar_t* mu_all = centres.data_ptr<scalar_t>();
    const scalar_t* rays_all = rays.data_ptr<scalar_t>();
    const double* intr_all = intr.data_ptr<double>();
    const scalar_t* pr = prec.data_ptr<scalar_t>();
    int64_t* idx_all = idx.data_ptr<int64_t>();
    scalar_t* w_all = weights.data_ptr<scalar_t>();
    scalar_t* ws_all = wsum.data_ptr<scalar_t>();
    bool* vis_all = vis.data_ptr<bool>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t bc = Bc == 1 ? 0 : b;
        select_body(mu_all + b * K * 3, rays_all + bc * P * 3, intr_all + bc * 4, pr, K, H, W, M,
                    tau, idx_all + b * P * M);
      }
    });
    at::parallel_for(0, B * P, P, [&](int64_t q0, int64_t q1) {
      Pixel<scalar_t> px(M);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t b = q / P, p = q % P, bc = Bc == 1 ? 0 : b;
        const int64_t n =
            px.eval(mu_all + b * K * 3, rays_all + (bc * P + p) * 3, pr, idx_all + q * M, M);
        double sum = 0.0;
        for (int64_t m = 0; m < M; ++m) {
          w_all[q * M + m] = m < n ? static_cast<scalar_t>(px.w[m]) : scalar_t(0);
          sum += w_all[q * M + m];
        }
        ws_all[q] = static_cast<scalar_t>(sum);
      }
    });
    for (int64_t q = 0; q < B * P; ++q) {
      const int64_t k = idx_all[q * M];
      if (k >= 0) vis_all[(q / P) * K + k] = true;
    }
  });
  return {idx, weights, vis, wsum};
}

// Gradient of the centres from those of the weights [B, H, W, M] and of their per-pixel sums
// [B, H, W] (either may be empty: zero).
torch::Tensor backward(torch::Tensor grad_w, torch::Tensor grad_wsum, torch::Tensor centres,
                       torch::Tensor rays, torch::Tensor prec, torch::Tensor idx) {
  centres = centres.contiguous();
  grad_w = grad_w.to(centres.scalar_type()).contiguous();
  grad_wsum = grad_wsum.to(centres.scalar_type()).contiguous();
  rays = rays.to(centres.scalar_type()).contiguous();
  prec = prec.to(centres.scalar_type()).contiguous();
  idx = idx.contiguous();
  const int64_t B = centres.size(0), K = centres.size(1);
  const int64_t Bc = rays.size(0), H = rays.size(1), W = rays.size(2), P = H * W;
  const int64_t M = idx.size(3);
  const bool has_gw = grad_w.numel() > 0, has_gs = grad_wsum.numel() > 0;
  TORCH_CHECK(!has_gw || grad_w.numel() == B * P * M, "grad_w [B, H, W, M]");
  TORCH_CHECK(!has_gs || grad_wsum.numel() == B * P, "grad_wsum [B, H, W]");
  // Per-slot gradients (parallel over pixels), then a scatter onto kernels (parallel over bodies).
  // (only filled slots are written and read)
  std::unique_ptr<double[]> gslot_buf(new double[static_cast<size_t>(B * P * M * 3)]);
  double* gslot = gslot_buf.get();
  auto grad = torch::zeros({B, K, 3}, centres.options().dtype(torch::kFloat64));
  AT_DISPATCH_FLOATING_TYPES(centres.scalar_type(), "nbv_render_backward", [&] {
    const scalar_t* mu_all = centres.data_ptr<scalar_t>();
    const scalar_t* rays_all = rays.data_ptr<scalar_t>();
    const scalar_t* pr = prec.data_ptr<scalar_t>();
    const scalar_t* gw_all = has_gw ? grad_w.data_ptr<scalar_t>() : nullptr;
    const scalar_t* gs_all = has_gs ? grad_wsum.data_ptr<scalar_t>() : nullptr;
    const int64_t* idx_all = idx.data_ptr<int64_t>();
    double* g_all = grad.data_ptr<double>();
    at::parallel_for(0, B * P, P, [&](int64_t q0, int64_t q1) {
      Pixel<scalar_t> px(M);
      std::vector<double> gS(M), gact(M), gl(M);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t b = q / P, p = q % P, bc = Bc == 1 ? 0 : b;
        const scalar_t* r = rays_all + (bc * P + p) * 3;
        const int64_t* ip = idx_all + q * M;
        const int64_t n = px.eval(mu_all + b * K * 3, r, pr, ip, M);
        if (n == 0) continue;
        const Slot* s = px.s.data();
        for (int64_t m = 0; m < n; ++m) {
          const double gwm = (has_gw ? static_cast<double>(gw_all[q * M + m]) : 0.0) +
                             (has_gs ? static_cast<double>(gs_all[q]) : 0.0);
          const double g = gwm * px.w[m];
          gS[m] = -g;    // dL/dS_m
          gact[m] = -g;  // direct term of dL/dact_m
          gl[m] = 0.0;
        }
        // S_m = sum_k e_k phi_mk: dS_m/de_k = phi_mk; dS_m/dl_m = -dS_m/dl_k = e_k phi'_mk sd_k
        for (int64_t m = 0; m < n; ++m) {
          for (int64_t k = 0; k < n; ++k) {
            const double t = gS[m] * s[k].e;
            gact[k] -= t * static_cast<double>(px.phi[m * n + k]);
            const double h = t * static_cast<double>(px.dphi[m * n + k]) * s[k].sd;
            gl[m] += h;
            gl[k] -= h;
          }
        }
        const double rr = static_cast<double>(r[0]) * r[0] + static_cast<double>(r[1]) * r[1] +
                          static_cast<double>(r[2]) * r[2];
        for (int64_t m = 0; m < n; ++m) {
          const double a = pr[ip[m]];
          // act = a |mu - l r|^2 with l = mu.r / r.r: d act/d mu = 2a d, d act/d l = -2a d.r
          const double glt = gl[m] - gact[m] * 2.0 * a * s[m].dr * rr;
          double* o = gslot + (q * M + m) * 3;
          for (int c = 0; c < 3; ++c) o[c] = gact[m] * 2.0 * a * s[m].d[c] + glt * r[c] / rr;
        }
      }
    });
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        double* gb = g_all + b * K * 3;
        for (int64_t q = b * P * M; q < (b + 1) * P * M; ++q) {
          const int64_t k = idx_all[q];
          if (k < 0) continue;
          for (int c = 0; c < 3; ++c) gb[k * 3 + c] += gslot[q * 3 + c];
        }
      }
    });
  });
  return grad.to(centres.scalar_type());
}

}  // namespace

// engines/csrc/nbv_features.cpp
torch::Tensor features_forward(torch::Tensor idx, torch::Tensor weights, torch::Tensor table);
std::vector<torch::Tensor> features_backward(torch::Tensor grad, torch::Tensor idx,
                                             torch::Tensor weights, torch::Tensor table,
                                             bool need_w, bool need_table);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "NBV render: (idx, weights, visibility, wsum)",
        py::call_guard<py::gil_scoped_release>());
  m.def("backward", &backward, "NBV render backward: grad of the centres",
        py::call_guard<py::gil_scoped_release>());
  m.def("features_forward", &features_forward, "feature map [B, C, H, W] from kernel lists",
        py::call_guard<py::gil_scoped_release>());
  m.def("features_backward", &features_backward, "grads of features_forward",
        py::call_guard<py::gil_scoped_release>());
}
