// Plots are drawn by gnuplot (Debian gnuplot-nox, pngcairo terminal). The script is kept next to
// the images it draws, so a plot can be restyled and redrawn by hand.
#pragma once

#include <string>

#include "distbelief/base/status.h"

namespace distbelief {

// Writes `script` to `script_path` and runs gnuplot on it; gnuplot's messages go to
// script_path + ".log". kFailedPrecondition without gnuplot; kInternal naming the log if it fails.
Status RunGnuplot(const std::string& script, const std::string& script_path);

}  // namespace distbelief
