#include "distbelief/tensor/tensor.h"

#include <cstdlib>
#include <cstring>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"

namespace distbelief {

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    CHECK(d >= 0) << "negative dimension";
    n *= d;
  }
  return n;
}

void Tensor::Free::operator()(float* p) const { std::free(p); }

Tensor::Tensor(Shape shape) {
  Resize(shape);
  Zero();
}

Tensor::Tensor(const Tensor& other) { *this = other; }

Tensor& Tensor::operator=(const Tensor& other) {
  if (this == &other) return *this;
  if (other.size_ == 0) {  // an empty tensor (default-constructed or moved from) copies as empty
    shape_ = other.shape_;
    size_ = 0;
    return *this;
  }
  Resize(other.shape_);
  std::memcpy(data_.get(), other.data_.get(), size_ * sizeof(float));
  return *this;
}

Tensor& Tensor::operator=(Tensor&& other) noexcept {
  if (this == &other) return *this;
  shape_ = std::move(other.shape_);
  size_ = other.size_;
  capacity_ = other.capacity_;
  data_ = std::move(other.data_);
  other.shape_.clear();
  other.size_ = 0;
  other.capacity_ = 0;
  return *this;
}

Tensor& Tensor::Resize(const Shape& shape) {
  const int64_t n = NumElements(shape);
  if (n > capacity_) {
    // Round the allocation to whole 64-byte lines so vector loops may read the tail.
    const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
    CHECK(p != nullptr) << "out of memory allocating " << bytes << " bytes";
    data_.reset(p);
    capacity_ = n;
  }
  shape_ = shape;
  size_ = n;
  return *this;
}

void Tensor::Reshape(const Shape& shape) {
  CHECK(NumElements(shape) == size_) << "reshape " << ShapeString() << " to different size";
  shape_ = shape;
}

void Tensor::Zero() {
  if (size_ > 0) std::memset(data_.get(), 0, size_ * sizeof(float));
}

void Tensor::ZeroOnPool() {
  float* p = data_.get();
  ParallelFor(size_, int64_t{1} << 16, [p](int64_t lo, int64_t hi) { std::memset(p + lo, 0, (hi - lo) * sizeof(float)); });
}

void Tensor::Fill(float v) {
  for (int64_t i = 0; i < size_; ++i) data_[i] = v;
}

std::string Tensor::ShapeString() const {
  std::string s = "(";
  for (size_t i = 0; i < shape_.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape_[i]);
  }
  return s + ")";
}

}  // namespace distbelief
