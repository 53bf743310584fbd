// CHECK for programming errors (violated REQUIRES clauses, inconsistent shapes): prints the
// condition and location and aborts. Never used for input from outside the program.
// LOG_INFO / LOG_WARN print one line to stderr with a timestamp. Thread-safe.
#pragma once

#include <sstream>
#include <string>

namespace distbelief {

[[noreturn]] void CheckFailed(const char* file, int line, const char* cond, const std::string& msg);
void LogLine(const char* level, const std::string& msg);

namespace internal {
// Collects the streamed message of a failed CHECK and aborts when it goes out of scope.
class CheckMessage {
 public:
  CheckMessage(const char* file, int line, const char* cond) : file_(file), line_(line), cond_(cond) {}
  [[noreturn]] ~CheckMessage() { CheckFailed(file_, line_, cond_, stream_.str()); }
  std::ostream& stream() { return stream_; }

 private:
  const char* file_;
  int line_;
  const char* cond_;
  std::ostringstream stream_;
};
class LogMessage {
 public:
  explicit LogMessage(const char* level) : level_(level) {}
  ~LogMessage() { LogLine(level_, stream_.str()); }
  std::ostream& stream() { return stream_; }

 private:
  const char* level_;
  std::ostringstream stream_;
};
}  // namespace internal

#define CHECK(cond) \
  if (cond) {       \
  } else            \
    ::distbelief::internal::CheckMessage(__FILE__, __LINE__, #cond).stream()
#define CHECK_EQ(a, b) CHECK((a) == (b)) << (a) << " vs " << (b) << " "
#ifdef NDEBUG
#define DCHECK(cond) \
  if (true) {        \
  } else             \
    ::distbelief::internal::CheckMessage(__FILE__, __LINE__, #cond).stream()
#else
#define DCHECK(cond) CHECK(cond)
#endif
#define LOG_INFO ::distbelief::internal::LogMessage("I").stream()
#define LOG_WARN ::distbelief::internal::LogMessage("W").stream()

}  // namespace distbelief
