#include "distbelief/workloads/scale/plots.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "distbelief/io/gnuplot.h"

namespace distbelief {
namespace {

std::string Num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", x);
  return buf;
}

std::string Short(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g", x);
  return buf;
}

std::string Human(double x) {
  char buf[32];
  if (x >= 1e9) std::snprintf(buf, sizeof(buf), "%.3gG", x / 1e9);
  else if (x >= 1e6) std::snprintf(buf, sizeof(buf), "%.3gM", x / 1e6);
  else if (x >= 1e3) std::snprintf(buf, sizeof(buf), "%.3gk", x / 1e3);
  else std::snprintf(buf, sizeof(buf), "%.3g", x);
  return buf;
}

// The fitted law as a gnuplot expression in x, with n or d fixed.
std::string LawOfN(const JointLaw& l, double d) {
  return Num(l.e) + " + " + Num(l.a) + " / x**" + Num(l.alpha) + " + " + Num(l.b / std::pow(d, l.beta));
}
std::string LawOfD(const JointLaw& l, double n) {
  return Num(l.e) + " + " + Num(l.a / std::pow(n, l.alpha)) + " + " + Num(l.b) + " / x**" + Num(l.beta);
}

}  // namespace

StatusOr<std::vector<std::string>> WriteScalePlots(const std::vector<ScalePoint>& points, const JointLaw& law,
                                                   const std::string& out_dir) {
  std::map<double, std::vector<ScalePoint>> by_d, by_n;
  for (const auto& p : points) by_d[p.d].push_back(p), by_n[p.n].push_back(p);
  const std::string dat = out_dir + "/plot_points.dat";
  {
    std::ofstream out(dat);
    // Block i (gnuplot index i) = the runs with the i-th smallest D; then, after them, by N.
    for (const auto& [d, ps] : by_d) {
      for (const auto& p : ps) out << Num(p.n) << ' ' << Num(p.d) << ' ' << Num(p.loss) << ' ' << Num(6 * p.n * p.d)
                                   << ' ' << Num(law.Predict(p.n, p.d)) << '\n';
      out << "\n\n";
    }
    for (const auto& [n, ps] : by_n) {
      for (const auto& p : ps) out << Num(p.n) << ' ' << Num(p.d) << ' ' << Num(p.loss) << '\n';
      out << "\n\n";
    }
    if (!out) return absl::UnavailableError("cannot write " + dat);
  }
  double cmin = INFINITY, cmax = 0;
  for (const auto& p : points) cmin = std::min(cmin, 6 * p.n * p.d), cmax = std::max(cmax, 6 * p.n * p.d);

  std::ostringstream gp;
  gp << "set terminal pngcairo size 900,640 font 'sans,11'\nset grid\nset key outside right\n"
     << "set logscale x\nset ylabel 'held-out loss (nats/token)'\n"
     << "set autoscale fix\nset offsets graph 0.03, graph 0.03, graph 0.06, graph 0.06\nset format x '%.0s%c'\n";
  const int nd = static_cast<int>(by_d.size()), nn = static_cast<int>(by_n.size());
  // Loss against N, one colour per D.
  gp << "set output '" << out_dir << "/loss_vs_n.png'\nset xlabel 'non-embedding parameters N'\n"
     << "set title 'L(N, D) = E + A/N^{α} + B/D^{β}:  E = " << Short(law.e) << ", α = " << Short(law.alpha)
     << ", β = " << Short(law.beta) << "'\nplot ";
  int i = 0;
  for (const auto& [d, ps] : by_d) {
    gp << (i ? ", " : "") << "'" << dat << "' index " << i << " using 1:3 with points pt 7 lc " << i + 1
       << " title 'D=" << Human(d) << "', " << LawOfN(law, d) << " with lines lc " << i + 1 << " notitle";
    ++i;
  }
  gp << "\n";
  // Loss against D, one colour per N.
  gp << "set output '" << out_dir << "/loss_vs_d.png'\nset xlabel 'training tokens D'\nplot ";
  i = 0;
  for (const auto& [n, ps] : by_n) {
    gp << (i ? ", " : "") << "'" << dat << "' index " << nd + i << " using 2:3 with points pt 7 lc " << i + 1
       << " title 'N=" << Human(n) << "', " << LawOfD(law, n) << " with lines lc " << i + 1 << " notitle";
    ++i;
  }
  gp << "\n";
  // Loss against compute, with the frontier L(N_opt(C), D_opt(C)).
  const double g = std::pow(law.alpha * law.a / (law.beta * law.b), 1.0 / (law.alpha + law.beta));
  const double k = law.beta / (law.alpha + law.beta);
  const std::string nopt = "(" + Num(g) + " * (x/6)**" + Num(k) + ")";
  gp << "set output '" << out_dir << "/loss_vs_compute.png'\nset xlabel 'training compute C = 6ND (FLOPs)'\n"
     << "set xrange [" << Num(cmin / 2) << ":" << Num(cmax * 2) << "]\n"
     << "set title 'compute-optimal frontier: N_{opt} ∝ C^{" << Short(k) << "}, D_{opt} ∝ C^{" << Short(1 - k)
     << "}'\nplot ";
  i = 0;
  for (const auto& [d, ps] : by_d) {
    gp << (i ? ", " : "") << "'" << dat << "' index " << i << " using 4:3 with points pt 7 lc " << i + 1
       << " title 'D=" << Human(d) << "'";
    ++i;
  }
  gp << ", " << Num(law.e) << " + " << Num(law.a) << " / " << nopt << "**" << Num(law.alpha) << " + " << Num(law.b)
     << " / ((x/6)/" << nopt << ")**" << Num(law.beta) << " with lines lw 2 lc rgb 'black' title 'frontier'\n";
  // Residuals in log space against the prediction.
  gp << "set xrange [*:*]\nset output '" << out_dir << "/residuals.png'\n"
     << "set xlabel 'non-embedding parameters N'\nset ylabel 'log(measured) - log(fitted)'\n"
     << "set title 'residuals of the L(N, D) fit'\nplot ";
  for (i = 0; i < nd; ++i)
    gp << (i ? ", " : "") << "'" << dat << "' index " << i << " using 1:(log($3)-log($5)) with points pt 7 lc " << i + 1
       << " title 'D=" << Human(std::next(by_d.begin(), i)->first) << "'";
  gp << ", 0 with lines lc rgb 'black' notitle\n";
  (void)nn;
  DB_RETURN_IF_ERROR(RunGnuplot(gp.str(), out_dir + "/plots.gp"));
  return std::vector<std::string>{out_dir + "/loss_vs_n.png", out_dir + "/loss_vs_d.png",
                                  out_dir + "/loss_vs_compute.png", out_dir + "/residuals.png"};
}

}  // namespace distbelief
