// Hand-written op logs that pin down the fault model's rules.
#pragma once

namespace dssim {

// Prints failures; returns their number.
int RunSelfTest();

}  // namespace dssim
