#pragma once
// The project's own checkpoints: everything needed to resume a run where it stopped: model
// state, optimizer state, schedule, epoch, RNG states and history. One safetensors file: tensors
// under "model/<name>" and "optim/<name>", everything else as JSON in the metadata (key "dl").
// Written atomically (temporary file, then rename), so a crash never leaves a half-written one.
#include <string>

#include <nlohmann/json.hpp>

#include "models/weights.h"
#include "tensor/generator.h"

namespace dl {

struct Checkpoint {
  TensorDict model;            // a module's state_dict
  TensorDict optimizer;        // optimizer state tensors
  nlohmann::json meta;         // epoch, history, optimizer/scheduler scalars, RNG states, config
};

void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
// Throws dl::Error naming the file when it is missing, corrupt, or not one of ours.
Checkpoint load_checkpoint(const std::string& path);

nlohmann::json generator_state_to_json(const Generator::State& s);
Generator::State generator_state_from_json(const nlohmann::json& j);

}  // namespace dl
