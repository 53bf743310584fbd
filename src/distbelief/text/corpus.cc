#include "distbelief/text/corpus.h"

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "distbelief/base/logging.h"
#include "distbelief/text/spm_client.h"

namespace distbelief {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[8] = {'D', 'B', 'T', 'O', 'K', 'E', 'N', '1'};
constexpr int kEos = 2;  // sentencepiece's default </s>

uint64_t Fnv(uint64_t h, const std::string& s) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

StatusOr<std::string> ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Token cache: magic, vocab, train count, heldout count, train docs, heldout docs, bytes, ids,
// then a checksum of everything before it.
Status WriteTokens(const fs::path& p, const TokenCorpus& c) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::UnavailableError("cannot write " + tmp.string());
    const int64_t head[7] = {c.vocab, static_cast<int64_t>(c.train.size()),
                             static_cast<int64_t>(c.heldout.size()), c.train_documents,
                             c.heldout_documents, c.train_bytes, c.heldout_bytes};
    out.write(kMagic, 8);
    out.write(reinterpret_cast<const char*>(head), sizeof(head));
    out.write(reinterpret_cast<const char*>(c.train.data()), c.train.size() * 2);
    out.write(reinterpret_cast<const char*>(c.heldout.data()), c.heldout.size() * 2);
    uint64_t sum = 0;
    for (uint16_t t : c.train) sum = sum * 31 + t;
    for (uint16_t t : c.heldout) sum = sum * 31 + t;
    out.write(reinterpret_cast<const char*>(&sum), 8);
    if (!out) return absl::UnavailableError("cannot write " + tmp.string());
  }
  fs::rename(tmp, p);
  return absl::OkStatus();
}

// False when the cache is missing or damaged (then it is rebuilt).
bool ReadTokens(const fs::path& p, TokenCorpus* c) {
  StatusOr<std::string> bytes = ReadFile(p);
  return bytes.ok() && ParseTokenCache(*bytes, c);
}

// Pieces in the model: the lines of its .vocab file, written next to it by the trainer.
int64_t CountVocab(const fs::path& model) {
  fs::path vocab = model;
  vocab.replace_extension(".vocab");
  std::ifstream in(vocab);
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

}  // namespace

bool ParseTokenCache(std::string_view bytes, TokenCorpus* c) {
  int64_t head[7];
  constexpr size_t kHead = 8 + sizeof(head);
  if (bytes.size() < kHead + 8 || bytes.substr(0, 8) != std::string_view(kMagic, 8)) return false;
  std::memcpy(head, bytes.data() + 8, sizeof(head));
  // Both counts are checked against the bytes there are before anything is allocated.
  const uint64_t tokens = (bytes.size() - kHead - 8) / 2;
  if (head[1] < 0 || head[2] < 0 || static_cast<uint64_t>(head[1]) > tokens ||
      static_cast<uint64_t>(head[2]) != tokens - static_cast<uint64_t>(head[1]) || (bytes.size() - kHead - 8) % 2 != 0)
    return false;
  c->vocab = head[0];
  c->train.resize(head[1]);
  c->heldout.resize(head[2]);
  c->train_documents = head[3];
  c->heldout_documents = head[4];
  c->train_bytes = head[5];
  c->heldout_bytes = head[6];
  const char* at = bytes.data() + kHead;
  if (!c->train.empty()) std::memcpy(c->train.data(), at, c->train.size() * 2);
  if (!c->heldout.empty()) std::memcpy(c->heldout.data(), at + c->train.size() * 2, c->heldout.size() * 2);
  uint64_t stored = 0, sum = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  for (uint16_t t : c->train) sum = sum * 31 + t;
  for (uint16_t t : c->heldout) sum = sum * 31 + t;
  return sum == stored;
}

StatusOr<TokenCorpus> LoadTokenCorpus(const CorpusOptions& o) {
  if (!fs::is_directory(o.dir)) return absl::NotFoundError("corpus folder " + o.dir + " does not exist");
  if (o.vocab < 16 || o.vocab > 65536)
    return absl::InvalidArgumentError("vocabulary size " + std::to_string(o.vocab) + " is outside [16, 65536]");
  if (o.holdout_every < 2) return absl::InvalidArgumentError("holdout_every must be at least 2");
  for (const std::string& p : {o.dir, o.cache_dir})
    if (p.find(' ') != std::string::npos)
      return absl::InvalidArgumentError("path '" + p + "' has a space; sentencepiece cannot take it");

  std::vector<fs::path> docs;
  for (const auto& e : fs::directory_iterator(o.dir))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.' && e.file_size() > 0)
      docs.push_back(e.path());
  std::sort(docs.begin(), docs.end());
  if (docs.empty()) return absl::InvalidArgumentError("corpus folder " + o.dir + " holds no non-empty documents");
  if (static_cast<int64_t>(docs.size()) < o.holdout_every)
    return absl::InvalidArgumentError("corpus folder " + o.dir + " holds " + std::to_string(docs.size()) +
                                      " documents; holding out every " + std::to_string(o.holdout_every) +
                                      "th needs at least that many");
  uint64_t key = 1469598103934665603ull;
  for (const auto& d : docs) key = Fnv(key, d.filename().string() + ":" + std::to_string(fs::file_size(d)));
  key = Fnv(key, "v" + std::to_string(o.vocab) + "h" + std::to_string(o.holdout_every) + "s" +
                     std::to_string(o.seed) + "n" + std::to_string(o.tokenizer_sentences));
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(key));
  std::error_code ec;
  fs::create_directories(o.cache_dir, ec);
  if (ec) return absl::UnavailableError("cannot create " + o.cache_dir + ": " + ec.message());
  const fs::path prefix = fs::path(o.cache_dir) / ("spm-" + std::string(hex));
  const fs::path model = prefix.string() + ".model";
  const fs::path tokens = fs::path(o.cache_dir) / ("tokens-" + std::string(hex) + ".bin");

  TokenCorpus c;
  c.tokenizer_model = model.string();
  if (fs::exists(model) && ReadTokens(tokens, &c)) {
    c.from_cache = true;
    return c;
  }

  auto held = [&](size_t i) { return static_cast<int64_t>(i) % o.holdout_every == o.holdout_every - 1; };
  if (!fs::exists(model)) {
    // The tokenizer sees only training documents, one line per paragraph (long ones cut).
    const fs::path lines = prefix.string() + ".lines.tmp";
    int64_t chars = 0;
    {
      std::ofstream out(lines, std::ios::trunc);
      for (size_t i = 0; i < docs.size(); ++i) {
        if (held(i)) continue;
        DB_ASSIGN_OR_RETURN(std::string raw, ReadFile(docs[i]));
        std::istringstream in(raw);
        std::string line;
        while (std::getline(in, line)) {
          if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
          chars += line.size();
          for (size_t s = 0; s < line.size(); s += 2000) out << line.substr(s, 2000) << '\n';
        }
      }
      if (!out) return absl::UnavailableError("cannot write " + lines.string());
    }
    if (chars == 0) {
      fs::remove(lines, ec);
      return absl::InvalidArgumentError("the training documents in " + o.dir + " hold no text");
    }
    LOG_INFO << "training a " << o.vocab << "-piece sentencepiece tokenizer on " << o.dir;
    const Status st = TrainSentencePiece(lines.string(), prefix.string(), o.vocab, o.tokenizer_sentences, o.seed);
    fs::remove(lines, ec);
    DB_RETURN_IF_ERROR(st);
  }
  // Encode every document in the helper; read back (bytes, count, ids) per document.
  const fs::path list = fs::path(o.cache_dir) / ("list-" + std::string(hex) + ".tmp");
  const fs::path ids_file = fs::path(o.cache_dir) / ("ids-" + std::string(hex) + ".tmp");
  {
    std::ofstream out(list, std::ios::trunc);
    for (const auto& d : docs) out << d.string() << '\n';
  }
  const Status st = RunSentencePieceHelper({"encode", model.string(), list.string(), ids_file.string()});
  fs::remove(list, ec);
  if (!st.ok()) {
    fs::remove(ids_file, ec);
    return st;
  }
  std::ifstream in(ids_file, std::ios::binary);
  int64_t max_id = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    int64_t head[2];
    in.read(reinterpret_cast<char*>(head), sizeof(head));
    if (!in || head[1] < 0) return absl::DataLossError("short output from the sentencepiece helper");
    std::vector<uint16_t> ids(head[1]);
    in.read(reinterpret_cast<char*>(ids.data()), ids.size() * 2);
    if (!in) return absl::DataLossError("short output from the sentencepiece helper");
    auto& dst = held(i) ? c.heldout : c.train;
    for (uint16_t id : ids) max_id = std::max<int64_t>(max_id, id);
    dst.insert(dst.end(), ids.begin(), ids.end());
    dst.push_back(kEos);
    (held(i) ? c.heldout_documents : c.train_documents) += 1;
    (held(i) ? c.heldout_bytes : c.train_bytes) += head[0];
  }
  in.close();
  fs::remove(ids_file, ec);
  if (c.train_bytes == 0) return absl::InvalidArgumentError("the training documents in " + o.dir + " hold no text");
  // The model's real size (a small corpus may stop short of the requested vocabulary).
  c.vocab = std::max<int64_t>(max_id + 1, CountVocab(model));
  DB_RETURN_IF_ERROR(WriteTokens(tokens, c));
  return c;
}

}  // namespace distbelief
