"""The simulation harness: the memory model in HDL, so a testbench need not wake every cycle.

The testbench drives the design through a harness module that passes every port through. In
*direct* mode the testbench's ``in_valid``/``in_data`` reach the design (random valid gaps need
that). Otherwise the harness holds the job's input words in a memory loaded over a wide port and
offers them itself, with the testbench's memory semantics (``bandwidth`` n/d words a cycle into a
FIFO of ``fifo`` words, 0 for unbounded), so the simulator runs between output beats without the
testbench: one Python step per output beat instead of one per input word.

Word ``i+1`` is offered from the cycle ``t`` (counted from the first word's take, ``t0``) with
``(t - t0) * n >= u_i``, where ``u`` ("fetch units") grows by ``d`` a word taken and, with a FIFO,
is at least ``(take time of word i+1-fifo, plus one) * n``: the word that frees the FIFO slot.
"""

from __future__ import annotations

import re

__all__ = ["harness_verilog", "HARNESS_TOP", "LOAD_WORDS", "FIFO_SLOTS"]

HARNESS_TOP = "einforge_harness"
LOAD_WORDS = 32        # input words written a cycle when loading the memory
FIFO_SLOTS = 256       # the largest FIFO the harness models (a larger one runs in direct mode)

_PORT = re.compile(r"^\s*(input|output)\s+(?:(?:wire|reg)\s+)?(?:\[(\d+):0\]\s*)?\\?([\w$]+)\s*;", re.M)


def design_ports(text: str, top: str) -> dict[str, tuple[str, int]]:
    """The top module's ports: name -> (direction, width), from its Verilog."""
    start = text.index(f"module {top}(")
    body = text[start:text.index("endmodule", start)]
    return {m.group(3): (m.group(1), int(m.group(2)) + 1 if m.group(2) else 1) for m in _PORT.finditer(body)}


def harness_verilog(text: str, top: str, max_words: int) -> str:
    """Verilog of the harness around the design ``top`` (whose Verilog is ``text``) for jobs of at
    most ``max_words`` input words."""
    ports = design_ports(text, top)
    width = ports["in_data"][1]
    addr = max(1, (max(max_words, LOAD_WORDS) - 1).bit_length())
    addr = max(addr, LOAD_WORDS.bit_length())     # at least two loads' worth: a load address bit
    depth = 1 << addr
    load_addr = addr - (LOAD_WORDS.bit_length() - 1)
    ring_bits = FIFO_SLOTS.bit_length() - 1
    passed = [p for p in ports if p not in ("clk", "rst", "in_valid", "in_data")]

    def decl(name):
        d, w = ports[name]
        return f"  {d} {'' if w == 1 else f'[{w - 1}:0] '}{name};"

    conns = ",\n".join([f"    .{p}({p})" for p in ("clk", "rst") + tuple(passed)]
                       + ["    .in_valid(dut_in_valid)", "    .in_data(dut_in_data)"])
    return f"""// einforge simulation harness: the memory model in HDL (generated; see einforge/sim/_harness.py)
module {HARNESS_TOP}(clk, rst, direct, in_valid, in_data, load_en, load_addr, load_data, go, halt, n_words,
    bw_n, bw_d, fifo_depth, started, first_at, {", ".join(passed)});
  input clk;
  input rst;
  input direct;
  input in_valid;
  input [{width - 1}:0] in_data;
  input load_en;
  input [{load_addr - 1}:0] load_addr;
  input [{LOAD_WORDS * width - 1}:0] load_data;
  input go;
  input halt;
  input [{addr}:0] n_words;
  input [15:0] bw_n;
  input [15:0] bw_d;
  input [15:0] fifo_depth;
  output reg started;
  output reg [31:0] first_at;          // the cycle (from go's, 0) the first word was taken
{chr(10).join(decl(p) for p in passed)}
  reg [{width - 1}:0] words [0:{depth - 1}];
  reg [47:0] ring [0:{FIFO_SLOTS - 1}];
  reg active;
  reg [{addr}:0] i;
  reg [47:0] rel;
  reg [47:0] units;
  reg [31:0] since;
  wire [31:0] since_now = go ? 32'd0 : since;
  wire [{addr}:0] i_now = go ? 0 : i;
  wire [47:0] rel_now = go ? 48'd0 : rel;
  wire [47:0] units_now = go ? 48'd0 : units;
  wire started_now = go ? 1'b0 : started;
  wire offer = (go | active) & (i_now < n_words) & ((i_now == 0) | (rel_now >= units_now));
  wire dut_in_valid = direct ? in_valid : offer;
  wire [{width - 1}:0] dut_in_data = direct ? in_data : words[i_now[{addr - 1}:0]];
  wire take = ~direct & offer & in_ready;
  // the FIFO slot word i+1 needs is freed by the take of word i+1-fifo (this one, when fifo is 1)
  wire [{addr}:0] freeing = i_now + 1 - fifo_depth;
  wire [47:0] freed_at = (fifo_depth == 1) ? rel_now + bw_n : ring[freeing[{ring_bits - 1}:0]];
  wire [47:0] units_next = units_now + bw_d;
  wire bounded = (fifo_depth != 0) & (i_now + 1 >= fifo_depth);
  integer j;
  always @(posedge clk) begin
    if (load_en)
      for (j = 0; j < {LOAD_WORDS}; j = j + 1)
        words[{{load_addr, {LOAD_WORDS.bit_length() - 1}'d0}} + j] <= load_data[j * {width} +: {width}];
    if (rst | halt) begin
      active <= 1'b0;
      started <= 1'b0;
      i <= 0;
      rel <= 48'd0;
      units <= 48'd0;
    end else begin
      since <= since_now + 1;
      if (take & ~started_now)
        first_at <= since_now;
      if (go) begin
        active <= 1'b1;
        i <= 0;
        rel <= 48'd0;
        units <= 48'd0;
        started <= 1'b0;
      end
      if ((go | active) & (started_now | take))
        rel <= rel_now + bw_n;
      if (take) begin
        i <= i_now + 1;
        started <= 1'b1;
        ring[i_now[{ring_bits - 1}:0]] <= rel_now + bw_n;
        units <= (bounded & (freed_at > units_next)) ? freed_at : units_next;
      end
    end
  end
  {top} dut(
{conns}
  );
endmodule
"""
