// The live dashboard: a read-only web page over a folder of runs (`distbelief dashboard`, and
// `distbelief train --dashboard PORT` for the run in progress).
//
// What it serves (cpp-httplib, from Debian): the page and its script (web/), the plotting library
// uPlot (npm, unpacked by scripts/setup.sh), and a JSON API over the runs found under runs_dir
// (every folder holding a metrics.jsonl, a report.md or a scaling sweep's scale.db):
//   GET /api/runs                      runs, their status, record count, latest values, config,
//                                      report (report.md, up to 256 KiB), pictures
//   GET /api/metrics?run=R[&from=N]    records N.. of R's metrics.jsonl, as a JSON array
//   GET /api/stream?run=R              server-sent events: every record, then each new one as written
//   GET /api/cluster?run=R             the last 300 records of R's cluster.jsonl (Downpour: replicas,
//                                      shards, staleness histogram, once a second), a JSON array
//   GET /api/file?run=R&name=F         a picture (.png / .svg) of the run, by its path in the run
// Security: loopback by default; any other address needs a token, given as ?token= or an
// "Authorization: Bearer" header, else 401. Only GET and HEAD (else 405); a request naming an
// unknown run or an unsafe path gets a 4xx, never a file outside runs_dir.
// Threads: the server runs on a pool of its own (4 threads: each open event stream holds one).
#pragma once

#include <memory>
#include <string>

#include "distbelief/base/status.h"

namespace distbelief {

struct DashboardOptions {
  std::string runs_dir = "runs";
  std::string listen = "127.0.0.1:8080";  // HOST:PORT; port 0 picks a free one
  std::string token;                       // required when HOST is not loopback
  std::string web_dir;                     // index.html, app.js, style.css ("" = the source tree's web/)
  std::string uplot_dir;                   // uPlot.iife.min.js, uPlot.min.css ("" = data/npm/uplot/dist)
  // A run's status: "running" while train.pid (written by `distbelief train`) names a live
  // distbelief process; without that file, "finished" if it has a checkpoint, else "running" if
  // its metrics changed in the last live_seconds, else "stopped".
  double live_seconds = 30;
};

class Dashboard {
 public:
  // Binds and starts serving on a thread of its own. kInvalidArgument for a bad address or a
  // non-loopback one without a token; kNotFound if the page's files are missing; kUnavailable if
  // the port cannot be bound.
  static StatusOr<std::unique_ptr<Dashboard>> Start(const DashboardOptions& o);
  ~Dashboard();  // stops serving
  int port() const;
  std::string url() const;  // http://HOST:PORT/ (with ?token= when one is set)

  class Impl;

 private:
  explicit Dashboard(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace distbelief
