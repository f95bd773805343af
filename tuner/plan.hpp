// Tuning plans: one entry per (layer, batch bucket) (issue 7).
#pragma once
