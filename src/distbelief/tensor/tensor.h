// Tensor: a shaped, contiguous, 64-byte-aligned array of fp32, row-major (last index fastest).
// A Tensor owns its storage; copying copies the data. Not thread-safe for concurrent writes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace distbelief {

using Shape = std::vector<int64_t>;

class Tensor {
 public:
  Tensor() = default;
  // A zero-filled tensor of `shape`.
  explicit Tensor(Shape shape);
  Tensor(std::initializer_list<int64_t> shape) : Tensor(Shape(shape)) {}
  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  // Moving leaves `other` empty (shape (), size 0, no storage).
  Tensor(Tensor&& other) noexcept { *this = std::move(other); }
  Tensor& operator=(Tensor&& other) noexcept;

  // Gives the tensor `shape`. Storage is reused when large enough; the contents are then
  // unspecified (call Zero() if needed). Returns *this.
  Tensor& Resize(const Shape& shape);
  // Same storage, new shape with the same number of elements.
  void Reshape(const Shape& shape);

  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  // dim(-1) is the last dimension.
  int64_t dim(int i) const { return shape_[i < 0 ? shape_.size() + i : i]; }
  int64_t size() const { return size_; }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  std::span<float> span() { return {data_.get(), static_cast<size_t>(size_)}; }
  std::span<const float> span() const { return {data_.get(), static_cast<size_t>(size_)}; }
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }

  void Zero();
  // Zero() in chunks over the process's thread pool (base/parallel.h): only from a thread that
  // owns the pool (a driver or replica thread, not a shard's transport threads). For gradients
  // of a few MB, which one thread clears while the others wait.
  void ZeroOnPool();
  void Fill(float v);
  std::string ShapeString() const;

 private:
  struct Free {
    void operator()(float* p) const;
  };
  Shape shape_;
  int64_t size_ = 0;
  int64_t capacity_ = 0;
  std::unique_ptr<float[], Free> data_;
};

int64_t NumElements(const Shape& shape);

}  // namespace distbelief
