#include "vmwp/thread_stacks.h"

#include <pthread.h>

#include <thread>

#include "gtest/gtest.h"

namespace vmwp {
namespace {

size_t StackOfANewThread() {
  size_t size = 0;
  std::thread t([&size] {
    pthread_attr_t attr;
    if (::pthread_getattr_np(::pthread_self(), &attr) == 0) {
      ::pthread_attr_getstacksize(&attr, &size);
      ::pthread_attr_destroy(&attr);
    }
  });
  t.join();
  return size;
}

TEST(ThreadStacksTest, NewThreadsGetTheWorkersStackSize) {
  ASSERT_TRUE(LimitDefaultThreadStacks().ok());
  const size_t size = StackOfANewThread();
  // glibc may round up to a page and add its TLS/guard bookkeeping.
  EXPECT_GE(size, kWorkerThreadStackBytes);
  EXPECT_LT(size, size_t{2} << 20) << "a 2 MiB stack can hold a huge page";
}

}  // namespace
}  // namespace vmwp
