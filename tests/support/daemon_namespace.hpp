// Transitional, for the tests whose bodies are being changed on another branch (they still
// say `namespace thecal::daemon` or `daemon::`): the dosing loop moved from daemon/ to loop/
// (namespace thecal::loop) and the journal keeper to app/ (thecal::app).  Once that branch
// is merged, those tests name the new namespaces and this header goes.
#pragma once

#include "app/journal_keeper.hpp"
#include "loop/dosing_loop.hpp"
#include "loop/loop_clock.hpp"

namespace thecal::daemon {
using namespace thecal::loop;  // NOLINT(google-build-using-namespace)
using namespace thecal::app;   // NOLINT(google-build-using-namespace)
}  // namespace thecal::daemon
