// The built-in plugins that make continual-learning strategies out of the
// Strategy template, one header each under training/plugins/; the registry
// (training/registry.h) builds a strategy by name from them.
#pragma once

#include "continua/training/plugins/cumulative.h"
#include "continua/training/plugins/ewc.h"
#include "continua/training/plugins/lwf.h"
#include "continua/training/plugins/replay.h"
