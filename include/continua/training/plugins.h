// The built-in plugins that make continual-learning strategies out of the
// Strategy template, one header each under training/plugins/; the registry
// (training/registry.h) builds a strategy by name from them.
#pragma once

#include "continua/training/plugins/agem.h"
#include "continua/training/plugins/bic.h"
#include "continua/training/plugins/cope.h"
#include "continua/training/plugins/cumulative.h"
#include "continua/training/plugins/der.h"
#include "continua/training/plugins/er_ace.h"
#include "continua/training/plugins/er_aml.h"
#include "continua/training/plugins/ewc.h"
#include "continua/training/plugins/gdumb.h"
#include "continua/training/plugins/gem.h"
#include "continua/training/plugins/gss.h"
#include "continua/training/plugins/icarl.h"
#include "continua/training/plugins/lfl.h"
#include "continua/training/plugins/lwf.h"
#include "continua/training/plugins/mas.h"
#include "continua/training/plugins/mir.h"
#include "continua/training/plugins/replay.h"
#include "continua/training/plugins/rwalk.h"
#include "continua/training/plugins/si.h"
