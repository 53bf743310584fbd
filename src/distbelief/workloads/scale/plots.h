// PNG plots of a sweep, drawn by gnuplot (Debian gnuplot-nox, pngcairo terminal): the data and a
// script are written next to the images, so a plot can be restyled and redrawn by hand.
#pragma once

#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/workloads/scale/fit.h"

namespace distbelief {

// Writes loss_vs_n.png, loss_vs_d.png, loss_vs_compute.png (with the compute-optimal frontier)
// and residuals.png to out_dir; returns their paths. kFailedPrecondition without gnuplot.
StatusOr<std::vector<std::string>> WriteScalePlots(const std::vector<ScalePoint>& points, const JointLaw& law,
                                                   const std::string& out_dir);

}  // namespace distbelief
