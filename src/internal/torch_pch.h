// Precompiled header for the LibTorch-facing targets: parsing torch's headers
// dominates the build on 2 cores, so they are parsed once.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <string>
#include <vector>
