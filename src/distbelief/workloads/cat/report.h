// The cat network's report: a Markdown page with PNG pictures, as in Le et al. 2012's figures and
// table 1: the first-stage filters, the best neuron's activations on faces and non-faces, its
// optimal stimulus (gradient ascent on a norm-constrained input) and the test images that excite
// it most, and the accuracy table with the number of test images stated plainly.
#pragma once

#include <string>

#include "distbelief/workloads/cat/cat.h"

namespace distbelief {

// Writes dir/report.md and its PNGs (the invariance curves through gnuplot, skipped with a note
// where it is missing); returns the report's path.
StatusOr<std::string> WriteCatReport(CatNet* net, const CatOptions& o, const CatTrainResult& r,
                                     const std::string& dir);

// The input of norm sqrt(S * S) (that of a normalized crop) that maximizes pooled unit `unit` of
// stage `s`, by projected gradient ascent from a seeded random start.
GreyImage OptimalStimulus(CatNet* net, int s, int64_t unit, int64_t frame, int steps = 200);

// One S x S frame transformed about its centre, as in the paper's fig. 4: scaled by `scale`,
// rotated by `degrees` (counter-clockwise), moved `shift` pixels right; bilinear, the outside
// filled with 0 (the mean of a normalized frame); then normalized again (zero mean, unit variance).
void TransformFrame(const float* in, int64_t s, double scale, double degrees, double shift, float* out);

// Pearson correlation of two equally long arrays (0 if either is constant).
double Correlation(const float* a, const float* b, int64_t n);

}  // namespace distbelief
