// distbelief_spm: sentencepiece in its own process.
//
// Debian's libsentencepiece carries its own copy of protobuf (3.14, exported), which collides at
// run time with the libprotobuf 3.21 that gRPC needs: a process that loads both aborts in
// protobuf's version check. So the main program never links sentencepiece; it runs this helper,
// which links nothing but the wrapper and sentencepiece.
//
//   distbelief_spm train INPUT MODEL_PREFIX VOCAB MAX_SENTENCES SEED
//   distbelief_spm encode MODEL LIST_FILE OUT_FILE     (LIST_FILE: one document path per line)
//   distbelief_spm encode-lines MODEL IN_FILE          (prints each line's ids, space-separated)
//   distbelief_spm decode-lines MODEL IN_FILE          (IN_FILE: ids a line; prints each line's text)
// OUT_FILE holds, per document: int64 normalized bytes, int64 id count, uint16 ids.
// Errors go to stderr with exit status 1.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "distbelief/text/sentencepiece_wrapper.h"

namespace {

int Die(const std::string& msg) {
  std::fprintf(stderr, "%s\n", msg.c_str());
  return 1;
}

int Encode(const std::string& model, const std::string& list, const std::string& out_path) {
  distbelief::spm::Processor sp;
  if (std::string err = sp.Load(model); !err.empty()) return Die("cannot load " + model + ": " + err);
  if (sp.vocab_size() > 65536) return Die("vocabulary above 65536 does not fit 16-bit ids");
  std::ifstream names(list);
  if (!names) return Die("cannot read " + list);
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  if (!out) return Die("cannot write " + out_path);
  std::string path;
  while (std::getline(names, path)) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Die("cannot read " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string text = distbelief::spm::NormalizeWhitespace(ss.str());
    std::vector<int> ids;
    if (std::string err = sp.Encode(text, &ids); !err.empty()) return Die("encoding " + path + ": " + err);
    std::vector<uint16_t> small(ids.begin(), ids.end());
    const int64_t head[2] = {static_cast<int64_t>(text.size()), static_cast<int64_t>(small.size())};
    out.write(reinterpret_cast<const char*>(head), sizeof(head));
    out.write(reinterpret_cast<const char*>(small.data()), small.size() * 2);
  }
  return out ? 0 : Die("cannot write " + out_path);
}

// One output line per input line: encode-lines prints ids, decode-lines text (its newlines made
// spaces, so the lines stay aligned). Ids outside the vocabulary decode as nothing.
int Lines(const std::string& mode, const std::string& model, const std::string& in_path) {
  distbelief::spm::Processor sp;
  if (std::string err = sp.Load(model); !err.empty()) return Die("cannot load " + model + ": " + err);
  std::ifstream in(in_path, std::ios::binary);
  if (!in) return Die("cannot read " + in_path);
  std::string line, out;
  while (std::getline(in, line)) {
    out.clear();
    if (mode == "encode-lines") {
      std::vector<int> ids;
      if (std::string err = sp.Encode(line, &ids); !err.empty()) return Die("encoding: " + err);
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i) out += ' ';
        out += std::to_string(ids[i]);
      }
    } else {
      std::vector<int> ids;
      std::istringstream ls(line);
      for (long id; ls >> id;)
        if (id >= 0 && id < sp.vocab_size()) ids.push_back(static_cast<int>(id));
      if (std::string err = sp.Decode(ids, &out); !err.empty()) return Die("decoding: " + err);
      for (char& c : out)
        if (c == '\n' || c == '\r') c = ' ';
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fputc('\n', stdout);
  }
  return std::fflush(stdout) == 0 ? 0 : Die("cannot write the output");
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() == 6 && a[0] == "train") {
    const std::string err = distbelief::spm::Train(a[1], a[2], std::atoi(a[3].c_str()), std::atoll(a[4].c_str()),
                                                   std::strtoull(a[5].c_str(), nullptr, 10));
    return err.empty() ? 0 : Die("sentencepiece training failed: " + err);
  }
  if (a.size() == 4 && a[0] == "encode") return Encode(a[1], a[2], a[3]);
  if (a.size() == 3 && (a[0] == "encode-lines" || a[0] == "decode-lines")) return Lines(a[0], a[1], a[2]);
  return Die("usage: distbelief_spm train|encode|encode-lines|decode-lines ... (see tools/spm_tool.cc)");
}
