// vmwp: the per-VM worker process. See README.md and worker_main.h.
#include "vmwp/worker_main.h"

int main(int argc, char** argv) {
  return vmwp::WorkerMain(argc, argv, nullptr);
}
