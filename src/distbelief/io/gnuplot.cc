#include "distbelief/io/gnuplot.h"

#include <cstdlib>
#include <fstream>

namespace distbelief {

Status RunGnuplot(const std::string& script, const std::string& script_path) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return absl::FailedPreconditionError("gnuplot is not installed (Debian gnuplot-nox; scripts/setup.sh installs it)");
  {
    std::ofstream out(script_path);
    out << script;
    if (!out) return absl::UnavailableError("cannot write " + script_path);
  }
  const std::string log = script_path + ".log";
  const std::string cmd = "gnuplot '" + script_path + "' 2> '" + log + "'";
  if (std::system(cmd.c_str()) != 0) return absl::InternalError("gnuplot failed on " + script_path + "; see " + log);
  return absl::OkStatus();
}

}  // namespace distbelief
