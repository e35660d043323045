// fiber.cpp: the context switch behind fiber.h.
#include "fiber.h"

#include <stdint.h>

#if defined(__x86_64__)
// emu_switch_stack(save, load): pushes the callee-saved registers and the SSE and x87 control
// words, stores the stack pointer in *save, then restores the same from the stack at `load`.
extern "C" void emu_switch_stack(void** save, void* load);
asm(R"(
    .text
    .globl emu_switch_stack
    .hidden emu_switch_stack
    .type emu_switch_stack, @function
    .p2align 4
emu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch_stack, .-emu_switch_stack
)");

void fiber::prepare(Context& context, char* stack, size_t size, void (*start)()) {
    // The frame emu_switch_stack pops: control words, six registers, then `start` as the
    // return address. After that `ret`, the stack pointer is 8 mod 16, as at a function entry.
    auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t(15);
    auto* frame = reinterpret_cast<uint64_t*>(top - 72);
    uint32_t mxcsr;
    uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    frame[0] = mxcsr | (uint64_t(fpucw) << 32);
    for (int r = 1; r <= 6; ++r) frame[r] = 0;
    frame[7] = reinterpret_cast<uint64_t>(start);
    context.stack_pointer = frame;
}

void fiber::swap(Context& from, Context& to) { emu_switch_stack(&from.stack_pointer, to.stack_pointer); }
#else
void fiber::prepare(Context& context, char* stack, size_t size, void (*start)()) {
    getcontext(&context.state);
    context.state.uc_stack.ss_sp = stack;
    context.state.uc_stack.ss_size = size;
    context.state.uc_link = nullptr;
    makecontext(&context.state, start, 0);
}

void fiber::swap(Context& from, Context& to) { swapcontext(&from.state, &to.state); }
#endif
