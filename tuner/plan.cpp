// Tuning plans (issue 7).
#include "tuner/plan.hpp"
