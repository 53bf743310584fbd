#include "distbelief/text/spm_client.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace distbelief {
namespace fs = std::filesystem;
namespace {

StatusOr<std::string> ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A temporary file, removed when this goes out of scope.
struct TempFile {
  std::string path;
  TempFile() {
    char p[] = "/tmp/distbelief_spm_io_XXXXXX";
    const int fd = ::mkstemp(p);
    if (fd >= 0) {
      ::close(fd);
      path = p;
    }
  }
  ~TempFile() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

// Where the sentencepiece helper (tools/spm_tool.cc) is: $DISTBELIEF_SPM, else next to this
// program, else where the build put it.
std::string HelperPath() {
  if (const char* env = std::getenv("DISTBELIEF_SPM"); env && *env) return env;
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) {
    const fs::path beside = fs::path(std::string(buf, n)).parent_path() / "distbelief_spm";
    if (fs::exists(beside)) return beside.string();
  }
  return DISTBELIEF_SPM_DEFAULT;
}

// Runs the helper with `args`; stdout goes to `out_file` ("" = discarded). A failure carries the
// helper's stderr.
}  // namespace

Status RunSentencePieceHelper(const std::vector<std::string>& args, const std::string& out_file) {
  const std::string helper = HelperPath();
  if (!fs::exists(helper))
    return absl::FailedPreconditionError("sentencepiece helper " + helper + " not found (build it: ninja -C build distbelief_spm)");
  char err_path[] = "/tmp/distbelief_spm_XXXXXX";
  const int err_fd = ::mkstemp(err_path);
  if (err_fd < 0) return absl::UnavailableError("cannot create a temporary file");
  std::vector<std::string> argv_s = {helper};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& x : argv_s) argv.push_back(x.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(err_fd, 2);
    const int out_fd = ::open(out_file.empty() ? "/dev/null" : out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out_fd >= 0) ::dup2(out_fd, 1);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  if (pid > 0) ::waitpid(pid, &status, 0);
  ::close(err_fd);
  std::string err;
  if (auto e = ReadFile(err_path); e.ok()) err = *e;
  ::unlink(err_path);
  while (!err.empty() && err.back() == '\n') err.pop_back();
  if (pid < 0) return absl::InternalError("fork failed");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return absl::InternalError("sentencepiece (" + args[0] + ") failed: " + (err.empty() ? "no message" : err));
  return absl::OkStatus();
}


Status TrainSentencePiece(const std::string& input_file, const std::string& prefix, int64_t vocab,
                          int64_t max_sentences, uint64_t seed) {
  return RunSentencePieceHelper({"train", input_file, prefix, std::to_string(vocab), std::to_string(max_sentences),
                                 std::to_string(seed)});
}

StatusOr<std::vector<std::vector<int>>> EncodeLines(const std::string& model, const std::vector<std::string>& lines) {
  TempFile in, out;
  if (in.path.empty() || out.path.empty()) return absl::UnavailableError("cannot create a temporary file");
  {
    std::ofstream f(in.path, std::ios::binary);
    for (const std::string& l : lines) {
      if (l.find('\n') != std::string::npos) return absl::InvalidArgumentError("EncodeLines: a line holds a newline");
      f << l << '\n';
    }
    if (!f) return absl::UnavailableError("cannot write " + in.path);
  }
  DB_RETURN_IF_ERROR(RunSentencePieceHelper({"encode-lines", model, in.path}, out.path));
  DB_ASSIGN_OR_RETURN(std::string text, ReadFile(out.path));
  std::vector<std::vector<int>> ids;
  ids.reserve(lines.size());
  std::istringstream s(text);
  for (std::string line; std::getline(s, line);) {
    std::vector<int>& v = ids.emplace_back();
    std::istringstream ls(line);
    for (int id; ls >> id;) v.push_back(id);
  }
  if (ids.size() != lines.size())
    return absl::InternalError("sentencepiece encoded " + std::to_string(ids.size()) + " of " +
                               std::to_string(lines.size()) + " lines");
  return ids;
}

StatusOr<std::vector<std::string>> DecodeLines(const std::string& model, const std::vector<std::vector<int>>& ids) {
  TempFile in, out;
  if (in.path.empty() || out.path.empty()) return absl::UnavailableError("cannot create a temporary file");
  {
    std::ofstream f(in.path, std::ios::binary);
    for (const auto& v : ids) {
      for (size_t i = 0; i < v.size(); ++i) f << (i ? " " : "") << v[i];
      f << '\n';
    }
    if (!f) return absl::UnavailableError("cannot write " + in.path);
  }
  DB_RETURN_IF_ERROR(RunSentencePieceHelper({"decode-lines", model, in.path}, out.path));
  DB_ASSIGN_OR_RETURN(std::string text, ReadFile(out.path));
  std::vector<std::string> lines;
  std::istringstream s(text);
  for (std::string line; std::getline(s, line);) lines.push_back(line);
  if (lines.size() != ids.size())
    return absl::InternalError("sentencepiece decoded " + std::to_string(lines.size()) + " of " +
                               std::to_string(ids.size()) + " lines");
  return lines;
}

}  // namespace distbelief
