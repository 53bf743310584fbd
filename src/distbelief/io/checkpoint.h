// Checkpoints in the safetensors format (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header mapping each tensor name to
// {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} plus a "__metadata__" map of
// strings, then the raw little-endian data. distbelief adds to the metadata a CRC-32 of the data
// ("distbelief.crc32") so corruption is caught, not loaded.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/tensor/tensor.h"

namespace distbelief {

struct Checkpoint {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

// Writes `ckpt` to `path` atomically: a temporary file in the same folder, fsync, rename over
// `path`, fsync of the folder. On failure `path` is untouched and the temporary removed.
Status WriteCheckpoint(const std::string& path, const Checkpoint& ckpt);

// Reads a checkpoint. kNotFound if missing; kDataLoss naming the problem for a truncated file,
// a bad header, offsets outside the file, an unsupported dtype or a checksum mismatch. Nothing
// is returned unless the whole file checks out.
StatusOr<Checkpoint> ReadCheckpoint(const std::string& path);

}  // namespace distbelief
