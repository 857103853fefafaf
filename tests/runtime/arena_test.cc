// SPDX-License-Identifier: Apache-2.0
// Arenas: planning and carving agree; alignment; overflow is caught.
#include "runtime/arena.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace tidal {
namespace {

void carve(BumpAllocator& a, TensorView* x, TensorView* y) {
  *x = a.allocate(DType::kF32, {3, 5});
  *y = a.allocate(DType::kBF16, {7});
}

TEST(Arena, PlanThenCarve) {
  BumpAllocator plan = BumpAllocator::planner();
  TensorView x, y;
  carve(plan, &x, &y);
  EXPECT_TRUE(plan.counting());
  EXPECT_EQ(plan.used(), kArenaAlignment + 14);

  Arena arena;
  ASSERT_TRUE(Arena::create(plan.used(), "test", Device{}, &arena).ok());
  BumpAllocator real = arena.allocator();
  carve(real, &x, &y);
  EXPECT_EQ(real.used(), plan.used());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(y.data) % kArenaAlignment, 0u);
  EXPECT_EQ(x.shape[1], 5);
  EXPECT_EQ(static_cast<float*>(x.data)[14], 0.0f);  // zero-filled
}

TEST(Arena, OverflowIsABug) {
  Arena arena;
  ASSERT_TRUE(Arena::create(64, "small", Device{}, &arena).ok());
  BumpAllocator a = arena.allocator();
  EXPECT_DEATH(a.allocate(DType::kF32, {1000}), "overflow");
}

TEST(Arena, HugeAllocationIsAStatus) {
  Arena arena;
  const Status s = Arena::create(size_t(1) << 62, "kv cache", Device{}, &arena);
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory);
  EXPECT_NE(s.message().find("kv cache"), std::string::npos);
}

}  // namespace
}  // namespace tidal
