// fiber.h: cooperative execution contexts for the emulator's GPU threads: each thread of a
// block runs on its own stack, and switches to the scheduler only at a barrier or a shuffle.
// On x86-64 a switch saves the callee-saved registers and the floating-point control words
// (no system call); elsewhere it falls back to <ucontext.h>.
#pragma once
#include <stddef.h>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace fiber {

// A suspended execution context.
struct Context {
#if defined(__x86_64__)
    void* stack_pointer = nullptr;
#else
    ucontext_t state;
#endif
};

// Makes `context` start `start` on the stack [stack, stack + size) when first resumed.
// `start` must never return: it ends by switching to another context for good.
void prepare(Context& context, char* stack, size_t size, void (*start)());

// Saves the running context into `from` and resumes `to`.
void swap(Context& from, Context& to);

}  // namespace fiber
