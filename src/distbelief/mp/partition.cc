#include "distbelief/mp/partition.h"

#include <chrono>
#include <cstring>

#include "distbelief/base/logging.h"
#include "distbelief/base/random.h"
#include "distbelief/nn/dense.h"
#include "distbelief/nn/spatial.h"

namespace distbelief {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Dims {
  int64_t outer, len, inner;
};

// Copies axis positions [g, g + count) (global indices) from src, which holds positions from s0,
// to dst, which holds positions from d0; both views share outer and inner.
void CopyAxis(const float* src, Dims sd, int64_t s0, float* dst, Dims dd, int64_t d0, int64_t g, int64_t count,
              bool add) {
  for (int64_t o = 0; o < sd.outer; ++o)
    for (int64_t i = 0; i < count; ++i) {
      const float* s = src + (o * sd.len + (g - s0 + i)) * sd.inner;
      float* d = dst + (o * dd.len + (g - d0 + i)) * dd.inner;
      if (add) {
        for (int64_t k = 0; k < sd.inner; ++k) d[k] += s[k];
      } else {
        std::memcpy(d, s, sd.inner * sizeof(float));
      }
    }
}

Shape ShapeOf(const MpShape& s, bool rows, int64_t batch, int64_t len) {
  return rows ? Shape{batch, s.c, len, s.w} : Shape{batch, len};
}

}  // namespace

std::vector<std::unique_ptr<Layer>> BuildMpReference(const MpModelSpec& spec, uint64_t seed) {
  Random rng(seed);
  std::vector<std::unique_ptr<Layer>> out;
  SpatialShape in{spec.channels, spec.height, spec.width};
  int64_t flat = in.c * in.h * in.w;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const MpLayerSpec& l = spec.layers[i];
    const std::string name = "l" + std::to_string(i);
    switch (l.kind) {
      case MpLayerKind::kLocallyConnected: {
        auto lc = std::make_unique<LocallyConnected2d>(name, in, l.maps, l.field, l.stride, &rng);
        in = {l.maps, lc->out_h(), lc->out_w()};
        out.push_back(std::move(lc));
        break;
      }
      case MpLayerKind::kConv:
        out.push_back(std::make_unique<Conv2d>(name, in, l.maps, l.field, l.stride, l.pad, &rng));
        in = {l.maps, (in.h + 2 * l.pad - l.field) / l.stride + 1, (in.w + 2 * l.pad - l.field) / l.stride + 1};
        break;
      case MpLayerKind::kL2Pool:
        out.push_back(std::make_unique<L2Pool>(l.field, l.stride));
        in = {in.c, (in.h - l.field) / l.stride + 1, (in.w - l.field) / l.stride + 1};
        break;
      case MpLayerKind::kLcn:
        out.push_back(std::make_unique<LocalContrastNorm>(l.field, l.field / 3.0f));
        break;
      case MpLayerKind::kFullyConnected:
        out.push_back(std::make_unique<Linear>(name, flat, l.units, &rng));
        in = {l.units, 1, 1};
        break;
    }
    flat = in.c * in.h * in.w;
  }
  return out;
}

StatusOr<std::unique_ptr<Partition>> Partition::Create(const MpModelSpec& spec, const PartitionPlan& plan, int index,
                                                       const std::vector<Layer*>& reference) {
  if (reference.size() != spec.layers.size()) return absl::InvalidArgumentError("reference does not match the spec");
  std::unique_ptr<Partition> part(new Partition(plan, index));
  part->specs_ = spec.layers;
  Random unused(0);
  for (size_t l = 0; l < spec.layers.size(); ++l) {
    const MpLayerSpec& s = spec.layers[l];
    const MpLayerPlan& lp = plan.layers[l];
    const MpRange own = lp.owned[index], need = lp.needed[index], virt = lp.virtual_needed[index];
    const std::string name = "p" + std::to_string(index) + ".l" + std::to_string(l);
    std::vector<Param*> ref = reference[l]->params();
    switch (s.kind) {
      case MpLayerKind::kLocallyConnected: {
        // W (OH, OW, K, C, F, F): the rows of its own output locations are one contiguous block.
        auto lc = std::make_unique<LocallyConnected2d>(name, SpatialShape{lp.in.c, need.size(), lp.in.w}, s.maps, s.field,
                                                       s.stride, &unused);
        CHECK(lc->out_h() == own.size()) << "locally connected block geometry";
        std::vector<Param*> mine = lc->params();
        const int64_t per_row = ref[0]->value.size() / lp.out.h;
        std::memcpy(mine[0]->value.data(), ref[0]->value.data() + own.begin * per_row, own.size() * per_row * sizeof(float));
        // b (K, OH, OW): row block of every map.
        for (int64_t k = 0; k < lp.out.c; ++k)
          std::memcpy(mine[1]->value.data() + k * own.size() * lp.out.w,
                      ref[1]->value.data() + (k * lp.out.h + own.begin) * lp.out.w, own.size() * lp.out.w * sizeof(float));
        part->layers_.push_back(std::move(lc));
        break;
      }
      case MpLayerKind::kConv: {
        // The tied kernel, copied whole; the window arrives padded, so no padding here.
        auto conv = std::make_unique<Conv2d>(name, SpatialShape{lp.in.c, virt.size(), lp.in.w + 2 * s.pad}, s.maps, s.field,
                                             s.stride, 0, &unused);
        std::vector<Param*> mine = conv->params();
        for (size_t i = 0; i < mine.size(); ++i)
          std::memcpy(mine[i]->value.data(), ref[i]->value.data(), ref[i]->value.size() * sizeof(float));
        part->layers_.push_back(std::move(conv));
        break;
      }
      case MpLayerKind::kL2Pool:
        part->layers_.push_back(std::make_unique<L2Pool>(s.field, s.stride));
        break;
      case MpLayerKind::kLcn:
        part->layers_.push_back(std::make_unique<LocalContrastNorm>(s.field, s.field / 3.0f));
        break;
      case MpLayerKind::kFullyConnected: {
        // W (O, D): the rows of its own units; b (O).
        const int64_t in = lp.in.size();
        auto fc = std::make_unique<Linear>(name, in, own.size(), &unused);
        std::vector<Param*> mine = fc->params();
        std::memcpy(mine[0]->value.data(), ref[0]->value.data() + own.begin * in, own.size() * in * sizeof(float));
        std::memcpy(mine[1]->value.data(), ref[1]->value.data() + own.begin, own.size() * sizeof(float));
        part->layers_.push_back(std::move(fc));
        break;
      }
    }
  }
  part->windows_.resize(spec.layers.size());
  part->outs_.resize(spec.layers.size());
  return part;
}

std::vector<Param*> Partition::params() {
  std::vector<Param*> all;
  for (auto& l : layers_)
    for (Param* p : l->params()) all.push_back(p);
  return all;
}

std::vector<std::vector<Param*>> Partition::layer_params() {
  std::vector<std::vector<Param*>> out;
  for (auto& l : layers_) out.push_back(l->params());
  return out;
}

Status Partition::Send(int64_t step, int layer, bool backward, int to, MpRange slice, const Tensor& src, int64_t src_begin,
                       bool rows, const MpShape& shape) {
  const int64_t outer = rows ? batch_ * shape.c : batch_, inner = rows ? shape.w : 1;
  const int64_t src_len = src.size() / (outer * inner);
  std::vector<float> buf(outer * slice.size() * inner);
  CopyAxis(src.data(), {outer, src_len, inner}, src_begin, buf.data(), {outer, slice.size(), inner}, slice.begin,
           slice.begin, slice.size(), false);
  stats_.floats_sent += static_cast<int64_t>(buf.size());
  stats_.messages_sent += 1;
  return links_->Send(p_, to, step, layer, backward, std::move(buf), slice.begin, slice.end, timeout);
}

Status Partition::Forward(int64_t step, const Tensor& x_window, Tensor* out) {
  const int P = plan_.partitions, L = static_cast<int>(layers_.size());
  batch_ = x_window.dim(0);
  for (int l = 0; l < L; ++l) {
    const MpLayerPlan& lp = plan_.layers[l];
    const MpRange need = lp.needed[p_], own = lp.owned[p_];
    const bool rows = lp.input_rows;
    const int64_t outer = rows ? batch_ * lp.in.c : batch_, inner = rows ? lp.in.w : 1;
    Tensor& win = windows_[l];
    if (l == 0) {
      CHECK(x_window.size() == outer * need.size() * inner) << "input window of partition " << p_;
      win.Resize(x_window.shape());
      std::memcpy(win.data(), x_window.data(), x_window.size() * sizeof(float));
    } else {
      const MpRange prev = plan_.layers[l - 1].owned[p_];
      for (int q = 0; q < P; ++q)
        if (const MpRange r = plan_.Send(l, p_, q); r.size() > 0)
          DB_RETURN_IF_ERROR(Send(step, l, false, q, r, outs_[l - 1], prev.begin, rows, lp.in));
      win.Resize(ShapeOf(lp.in, rows, batch_, need.size()));
      const Dims wd{outer, need.size(), inner};
      const MpRange mine = Intersect(prev, need);
      if (mine.size() > 0)
        CopyAxis(outs_[l - 1].data(), {outer, prev.size(), inner}, prev.begin, win.data(), wd, need.begin, mine.begin,
                 mine.size(), false);
      for (int q = 0; q < P; ++q) {
        const MpRange r = plan_.Send(l, q, p_);
        if (r.size() == 0) continue;
        const auto t0 = Clock::now();
        DB_ASSIGN_OR_RETURN(const std::vector<float> v, links_->Receive(p_, q, step, l, false, outer * r.size() * inner, timeout));
        stats_.wait_seconds += Seconds(t0);
        CopyAxis(v.data(), {outer, r.size(), inner}, r.begin, win.data(), wd, need.begin, r.begin, r.size(), false);
      }
    }
    const auto t0 = Clock::now();
    Layer* layer = layers_[l].get();
    switch (specs_[l].kind) {
      case MpLayerKind::kLocallyConnected:
      case MpLayerKind::kL2Pool:
        layer->Forward(win, &outs_[l]);
        break;
      case MpLayerKind::kConv: {
        // Explicit zero padding: rows outside the image and pad columns on both sides.
        const MpRange virt = lp.virtual_needed[p_];
        const int64_t pad = specs_[l].pad, pw = lp.in.w + 2 * pad;
        padded_.resize(L);
        Tensor& pt = padded_[l];
        pt.Resize({batch_, lp.in.c, virt.size(), pw});
        pt.Fill(0.0f);
        for (int64_t o = 0; o < outer; ++o)
          for (int64_t r = need.begin; r < need.end; ++r)
            std::memcpy(pt.data() + (o * virt.size() + (r - virt.begin)) * pw + pad,
                        win.data() + (o * need.size() + (r - need.begin)) * lp.in.w, lp.in.w * sizeof(float));
        layer->Forward(pt, &outs_[l]);
        break;
      }
      case MpLayerKind::kLcn: {
        layer->Forward(win, &scratch_);
        outs_[l].Resize({batch_, lp.out.c, own.size(), lp.out.w});
        CopyAxis(scratch_.data(), {outer, need.size(), inner}, need.begin, outs_[l].data(), {outer, own.size(), inner},
                 own.begin, own.begin, own.size(), false);
        break;
      }
      case MpLayerKind::kFullyConnected:
        if (rows) win.Reshape({batch_, lp.in.size()});
        layer->Forward(win, &outs_[l]);
        break;
    }
    stats_.compute_seconds += Seconds(t0);
    stats_.layer_seconds.resize(L);
    stats_.layer_seconds[l] += Seconds(t0);
  }
  out->Resize(outs_[L - 1].shape());
  std::memcpy(out->data(), outs_[L - 1].data(), out->size() * sizeof(float));
  return absl::OkStatus();
}

Status Partition::Backward(int64_t step, const Tensor& dout, Tensor* dx_window) {
  const int P = plan_.partitions, L = static_cast<int>(layers_.size());
  Tensor g(dout.shape());
  std::memcpy(g.data(), dout.data(), dout.size() * sizeof(float));
  Tensor dwin;
  for (int l = L - 1; l >= 0; --l) {
    const MpLayerPlan& lp = plan_.layers[l];
    const MpRange need = lp.needed[p_], own = lp.owned[p_];
    const bool rows = lp.input_rows;
    const int64_t outer = rows ? batch_ * lp.in.c : batch_, inner = rows ? lp.in.w : 1;
    const auto t0 = Clock::now();
    Layer* layer = layers_[l].get();
    switch (specs_[l].kind) {
      case MpLayerKind::kLocallyConnected:
      case MpLayerKind::kL2Pool:
        layer->Backward(g, &dwin);
        break;
      case MpLayerKind::kConv: {
        const MpRange virt = lp.virtual_needed[p_];
        const int64_t pad = specs_[l].pad, pw = lp.in.w + 2 * pad;
        Tensor dpad;
        layer->Backward(g, &dpad);
        dwin.Resize(ShapeOf(lp.in, true, batch_, need.size()));
        for (int64_t o = 0; o < outer; ++o)
          for (int64_t r = need.begin; r < need.end; ++r)
            std::memcpy(dwin.data() + (o * need.size() + (r - need.begin)) * lp.in.w,
                        dpad.data() + (o * virt.size() + (r - virt.begin)) * pw + pad, lp.in.w * sizeof(float));
        break;
      }
      case MpLayerKind::kLcn: {
        Tensor gfull(ShapeOf(lp.in, true, batch_, need.size()));
        gfull.Fill(0.0f);
        CopyAxis(g.data(), {outer, own.size(), inner}, own.begin, gfull.data(), {outer, need.size(), inner}, need.begin,
                 own.begin, own.size(), false);
        layer->Backward(gfull, &dwin);
        break;
      }
      case MpLayerKind::kFullyConnected:
        layer->Backward(g, &dwin);
        if (rows) dwin.Reshape(ShapeOf(lp.in, true, batch_, need.size()));
        break;
    }
    stats_.compute_seconds += Seconds(t0);
    stats_.layer_seconds.resize(L);
    stats_.layer_seconds[l] += Seconds(t0);
    if (l == 0) break;
    // The input of layer l is the output of layer l - 1, owned in blocks: return each owner its part.
    const MpRange prev = plan_.layers[l - 1].owned[p_];
    for (int q = 0; q < P; ++q)
      if (const MpRange r = plan_.Send(l, q, p_); r.size() > 0)
        DB_RETURN_IF_ERROR(Send(step, l, true, q, r, dwin, need.begin, rows, lp.in));
    Tensor gprev(ShapeOf(lp.in, rows, batch_, prev.size()));
    gprev.Fill(0.0f);
    const Dims gd{outer, prev.size(), inner};
    const MpRange mine = Intersect(prev, need);
    if (mine.size() > 0)
      CopyAxis(dwin.data(), {outer, need.size(), inner}, need.begin, gprev.data(), gd, prev.begin, mine.begin, mine.size(),
               true);
    for (int q = 0; q < P; ++q) {
      const MpRange r = plan_.Send(l, p_, q);
      if (r.size() == 0) continue;
      const auto tw = Clock::now();
      DB_ASSIGN_OR_RETURN(const std::vector<float> v, links_->Receive(p_, q, step, l, true, outer * r.size() * inner, timeout));
      stats_.wait_seconds += Seconds(tw);
      CopyAxis(v.data(), {outer, r.size(), inner}, r.begin, gprev.data(), gd, prev.begin, r.begin, r.size(), true);
    }
    g = std::move(gprev);
  }
  if (dx_window) {
    dx_window->Resize(dwin.shape());
    std::memcpy(dx_window->data(), dwin.data(), dwin.size() * sizeof(float));
  }
  return absl::OkStatus();
}

}  // namespace distbelief
