// Naive: fine-tuning on each experience in turn, no protection against
// forgetting: the lower bound every method is compared with.
#include "continua/training/registry.h"
#include "continua/training/strategy.h"

namespace continua {

CONTINUA_REGISTER_STRATEGY(StrategyInfo{
    "naive", "Naive fine-tuning: each experience in turn, nothing against forgetting (the lower bound)", {},
    [](Strategy&, const StrategyConfig&) {}});

}  // namespace continua
