#include "distbelief/workloads/seq2seq/decode.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace distbelief {
namespace {

struct Hyp {
  std::vector<int> tokens;
  double score = 0.0;  // sum of log-probabilities
};

double Normalized(const Hyp& h, float alpha) {
  if (alpha == 0.0f) return h.score;
  return h.score / std::pow((5.0 + static_cast<double>(h.tokens.size())) / 6.0, alpha);
}

}  // namespace

std::vector<std::vector<int>> Decode(Seq2Seq* model, const Tensor& src, const DecodeOptions& o) {
  const int64_t nb = src.dim(0);
  const int k = std::max(1, o.beam);
  Seq2Seq::State state = model->Encode(src);
  // live[b] holds sentence b's live hypotheses; their state rows follow one another, sentence
  // by sentence, in the order of b.
  std::vector<std::vector<Hyp>> live(nb, std::vector<Hyp>(1)), done(nb);
  Tensor tokens({nb}), logp;
  tokens.Fill(static_cast<float>(o.bos));
  const int64_t v = model->options().tgt_vocab;
  std::vector<int> idx(v);  // a row's token ids, partially sorted by log-probability
  for (int64_t t = 0; t < o.max_len; ++t) {
    model->Step(tokens, &state, &logp);
    std::vector<int64_t> rows;
    std::vector<float> next_tokens;
    int64_t r0 = 0;  // first row of the current sentence
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t n = static_cast<int64_t>(live[b].size());
      if (n == 0) continue;
      // The best k * 2 extensions of this sentence's live hypotheses (eos among them ends one).
      struct Cand { double score; int64_t row; int token; };
      std::vector<Cand> cands;
      cands.reserve(n * (2 * k + 1));
      for (int64_t i = 0; i < n; ++i) {
        const float* lp = logp.data() + (r0 + i) * v;
        // A partial top-(2k) of this row keeps the candidate list small.
        std::iota(idx.begin(), idx.end(), 0);
        const int m = static_cast<int>(std::min<int64_t>(2 * k, v));
        std::partial_sort(idx.begin(), idx.begin() + m, idx.end(), [&](int a, int c) { return lp[a] > lp[c]; });
        for (int j = 0; j < m; ++j) cands.push_back({live[b][i].score + lp[idx[j]], r0 + i, idx[j]});
      }
      std::sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& c) { return a.score > c.score; });
      std::vector<Hyp> survivors;
      for (const Cand& c : cands) {
        if (static_cast<int>(survivors.size()) >= k) break;
        Hyp h = live[b][c.row - r0];
        h.score = c.score;
        if (c.token == o.eos || t + 1 == o.max_len) {
          if (c.token != o.eos) h.tokens.push_back(c.token);
          if (static_cast<int>(done[b].size()) < k) done[b].push_back(std::move(h));
          continue;
        }
        h.tokens.push_back(c.token);
        rows.push_back(c.row);
        next_tokens.push_back(static_cast<float>(c.token));
        survivors.push_back(std::move(h));
      }
      r0 += n;
      // Done: k ended hypotheses, or no live one can still beat the best ended one (a live
      // hypothesis's log-probability only falls; its length penalty can at most reach max_len's).
      bool finished = static_cast<int>(done[b].size()) >= k || survivors.empty();
      if (!finished && !done[b].empty()) {
        double best_done = -INFINITY;
        for (const Hyp& h : done[b]) best_done = std::max(best_done, Normalized(h, o.length_penalty));
        const double lp_max = o.length_penalty == 0.0f ? 1.0 : std::pow((5.0 + o.max_len) / 6.0, o.length_penalty);
        double best_live = -INFINITY;
        for (const Hyp& h : survivors) best_live = std::max(best_live, h.score / lp_max);
        finished = best_live < best_done;
      }
      if (finished) {
        // Drop this sentence's rows (the last ones added) from the next step.
        rows.resize(rows.size() - survivors.size());
        next_tokens.resize(next_tokens.size() - survivors.size());
        survivors.clear();
      }
      live[b] = std::move(survivors);
    }
    if (rows.empty()) break;
    state = Seq2Seq::Gather(state, rows);
    tokens = Tensor({static_cast<int64_t>(next_tokens.size())});
    std::copy(next_tokens.begin(), next_tokens.end(), tokens.data());
  }
  std::vector<std::vector<int>> out(nb);
  for (int64_t b = 0; b < nb; ++b) {
    const Hyp* best = nullptr;
    double best_score = -INFINITY;
    for (const Hyp& h : done[b])
      if (Normalized(h, o.length_penalty) > best_score) best_score = Normalized(h, o.length_penalty), best = &h;
    for (const Hyp& h : live[b])  // only if max_len cut everything short
      if (!best && Normalized(h, o.length_penalty) > best_score) best_score = Normalized(h, o.length_penalty), best = &h;
    if (best) out[b] = best->tokens;
  }
  return out;
}

Tensor SourceBatch(const std::vector<const std::vector<int>*>& src, bool reverse, int pad, int64_t max_tokens) {
  int64_t s = 1;
  for (const auto* v : src) s = std::max<int64_t>(s, std::min<int64_t>(max_tokens, static_cast<int64_t>(v->size())));
  const int64_t b = static_cast<int64_t>(src.size());
  Tensor x({b, s});
  x.Fill(static_cast<float>(pad));
  for (int64_t r = 0; r < b; ++r) {
    const std::vector<int>& v = *src[r];
    const int64_t n = std::min<int64_t>(max_tokens, static_cast<int64_t>(v.size()));
    for (int64_t i = 0; i < n; ++i) x[r * s + (s - n) + i] = static_cast<float>(reverse ? v[n - 1 - i] : v[i]);
  }
  return x;
}

std::vector<std::vector<int>> DecodeAll(Seq2Seq* model, const std::vector<std::vector<int>>& src, const SourceLayout& l,
                                        const DecodeOptions& o, int64_t batch) {
  std::map<int64_t, std::vector<size_t>> by_len;
  for (size_t i = 0; i < src.size(); ++i)
    by_len[std::min<int64_t>(l.max_tokens, static_cast<int64_t>(src[i].size()))].push_back(i);
  std::vector<std::vector<int>> out(src.size());
  for (const auto& [len, rows] : by_len) {
    if (len == 0) continue;  // nothing to translate
    for (size_t at = 0; at < rows.size(); at += static_cast<size_t>(batch)) {
      std::vector<const std::vector<int>*> b;
      for (size_t k = at; k < std::min(rows.size(), at + static_cast<size_t>(batch)); ++k) b.push_back(&src[rows[k]]);
      DecodeOptions d = o;
      d.max_len = std::min<int64_t>(o.max_len, 2 * len + 10);
      const auto y = Decode(model, SourceBatch(b, l.reverse, l.pad, l.max_tokens), d);
      for (size_t k = 0; k < y.size(); ++k) out[rows[at + k]] = y[k];
    }
  }
  return out;
}

}  // namespace distbelief
