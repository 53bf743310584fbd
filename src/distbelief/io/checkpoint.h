// Checkpoints in the safetensors format (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header mapping each tensor name to
// {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} plus a "__metadata__" map of
// strings, then the raw little-endian data. distbelief adds to the metadata a CRC-32 of the data
// ("distbelief.crc32") so corruption is caught, not loaded.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/tensor/tensor.h"

namespace distbelief {

struct Checkpoint {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

// The CRC-32 (zlib's, as in gzip and PNG) of `bytes`, continuing from `crc` (0 to start).
uint32_t Crc32(std::string_view bytes, uint32_t crc = 0);

// Writes `ckpt` to `path` atomically: a temporary file in the same folder, fsync, rename over
// `path`, fsync of the folder. On failure `path` is untouched and the temporary removed.
Status WriteCheckpoint(const std::string& path, const Checkpoint& ckpt);

// Reads a checkpoint file: kNotFound if missing, kInvalidArgument if not a regular file, else
// as ParseCheckpoint.
StatusOr<Checkpoint> ReadCheckpoint(const std::string& path);

// Parses the bytes of a checkpoint; `origin` names it in errors. kDataLoss naming the problem for
// a truncated file, a bad header, offsets outside the data, tensors that overlap or leave bytes
// unindexed, a shape that does not match its bytes, an unsupported dtype, a missing or wrong
// checksum (the CRC is mandatory), or a NaN or Inf value. Nothing is returned unless the whole
// file checks out; nothing is allocated for a tensor before its size is checked against the file.
StatusOr<Checkpoint> ParseCheckpoint(std::string_view bytes, const std::string& origin);

}  // namespace distbelief
