#pragma once
// PyTorch checkpoints written by torch.save (zip format, PyTorch >= 1.6): <top>/data.pkl plus
// <top>/data/<key> storage files, optional <top>/byteorder. The legacy (pre-1.6) format is
// recognised and refused with a clear message.
#include <string>

#include "models/io/raw_tensor.h"
#include "models/io/sha256.h"

namespace dl::io {

// Loads a state dict: the pickled object must be a dict of name -> tensor, or a dict holding such
// a dict under "state_dict" or "model" (common training checkpoints). Order is the file's.
// Tensors that share a storage share the RawTensor::storage bytes. Every problem is a dl::Error
// naming the file.
RawStateDict load_pth(const std::string& path);

// When the file name has torchvision's form `<name>-<hex>.pth` (8 to 64 lower-case hex digits),
// checks that the digits are a prefix of the file's SHA-256 and throws a dl::Error naming both
// if not. Returns true if the hash was checked (and matched), false if the name has no hash.
bool check_torchvision_hash(const std::string& path);

}  // namespace dl::io
