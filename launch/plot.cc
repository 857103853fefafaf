// SPDX-License-Identifier: Apache-2.0
#include "launch/plot.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

namespace tidal::launch {
namespace {

struct Glyph {
  char c;
  uint8_t rows[7];  // 5 bits each, the leftmost column in bit 4
};

// A 5x7 pixel font: digits, upper case letters and the punctuation the labels use.
constexpr Glyph kFont[] = {
    {'0', {0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110}},
    {'1', {0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'2', {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111}},
    {'3', {0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110}},
    {'4', {0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010}},
    {'5', {0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110}},
    {'6', {0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110}},
    {'7', {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000}},
    {'8', {0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110}},
    {'9', {0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100}},
    {'A', {0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001}},
    {'B', {0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110}},
    {'C', {0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110}},
    {'D', {0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100}},
    {'E', {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111}},
    {'F', {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000}},
    {'G', {0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111}},
    {'H', {0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001}},
    {'I', {0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'J', {0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100}},
    {'K', {0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001}},
    {'L', {0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111}},
    {'M', {0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001}},
    {'N', {0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001}},
    {'O', {0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110}},
    {'P', {0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000}},
    {'Q', {0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101}},
    {'R', {0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001}},
    {'S', {0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110}},
    {'T', {0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100}},
    {'U', {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110}},
    {'V', {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100}},
    {'W', {0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010}},
    {'X', {0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001}},
    {'Y', {0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100}},
    {'Z', {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111}},
    {'.', {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100}},
    {',', {0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000}},
    {':', {0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000}},
    {'%', {0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011}},
    {'-', {0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000}},
    {'+', {0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000}},
    {'=', {0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000}},
    {'/', {0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000}},
    {'(', {0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010}},
    {')', {0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000}},
    {'_', {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111}},
    {'>', {0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000}},
    {'<', {0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010}},
    {'#', {0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010}},
    {'*', {0b00000, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0b00000}},
    {'?', {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100}},
    {'[', {0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110}},
    {']', {0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110}},
    {'\'', {0b00100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000}},
};

constexpr int kGlyphW = 5, kGlyphH = 7, kAdvance = 6;
constexpr Rgb kWhite{255, 255, 255}, kBlack{0, 0, 0}, kGrey{200, 200, 200}, kDark{90, 90, 90};

const Glyph* glyph_of(char c) {
  for (const Glyph& g : kFont) {
    if (g.c == c) return &g;
  }
  const char up = char(std::toupper(static_cast<unsigned char>(c)));
  for (const Glyph& g : kFont) {
    if (g.c == up) return &g;
  }
  for (const Glyph& g : kFont) {
    if (g.c == '?') return &g;
  }
  return nullptr;
}

void fill_rect(Image* img, int x0, int y0, int w, int h, Rgb c) {
  for (int y = y0; y < y0 + h; ++y) {
    for (int x = x0; x < x0 + w; ++x) img->set(x, y, c);
  }
}

// A line `thick` pixels wide (Bresenham, squares at every step).
void draw_line(Image* img, int x0, int y0, int x1, int y1, Rgb c, int thick) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    fill_rect(img, x0 - thick / 2, y0 - thick / 2, thick, thick, c);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

uint8_t mix(uint8_t a, uint8_t b, double t) { return uint8_t(std::lround(a + (b - a) * t)); }

Rgb mix(Rgb a, Rgb b, double t) { return {mix(a.r, b.r, t), mix(a.g, b.g, t), mix(a.b, b.b, t)}; }

// 0: red, 0.5: yellow, 1: green (ColorBrewer RdYlGn ends).
Rgb accuracy_color(double v) {
  const Rgb red{215, 48, 39}, yellow{254, 224, 139}, green{26, 152, 80};
  v = std::clamp(v, 0.0, 1.0);
  return v < 0.5 ? mix(red, yellow, v * 2) : mix(yellow, green, (v - 0.5) * 2);
}

// A round tick step giving about `ticks` intervals over `range`.
double nice_step(double range, int ticks) {
  if (!(range > 0)) return 1.0;
  const double raw = range / ticks;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * mag) return m * mag;
  }
  return 10 * mag;
}

std::string tick_label(double v, double step) {
  const int decimals = step >= 1 ? 0 : int(std::ceil(-std::log10(step) - 1e-9));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

const Rgb kPalette[] = {{31, 119, 180},  {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                        {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
                        {188, 189, 34},  {23, 190, 207}, {0, 0, 0},       {255, 187, 120}};

}  // namespace

int text_width(const std::string& text, int scale) {
  return text.empty() ? 0 : int(text.size()) * kAdvance * scale - scale;
}

void draw_text(Image* img, int x, int y, const std::string& text, int scale, Rgb color) {
  for (char ch : text) {
    const Glyph* g = glyph_of(ch);
    if (g != nullptr && ch != ' ') {
      for (int r = 0; r < kGlyphH; ++r) {
        for (int col = 0; col < kGlyphW; ++col) {
          if (g->rows[r] & (1 << (kGlyphW - 1 - col))) {
            fill_rect(img, x + col * scale, y + r * scale, scale, scale, color);
          }
        }
      }
    }
    x += kAdvance * scale;
  }
}

Image render_heatmap(const Heatmap& h) {
  const int s = 2, line = kGlyphH * s, pad = 12;
  const int rows = int(h.y_labels.size()), cols = int(h.x_labels.size());
  int label_w = text_width(h.y_title, s);
  for (const std::string& l : h.y_labels) label_w = std::max(label_w, text_width(l, s));
  int cell_w = text_width("100", s) + 14;
  for (const std::string& l : h.x_labels) cell_w = std::max(cell_w, text_width(l, s) + 8);
  const int cell_h = line + 14;
  const int grid_x = pad + label_w + pad, grid_y = pad + line + pad + line + 6;
  const int width = std::max(grid_x + cols * cell_w + pad, text_width(h.title, s) + 2 * pad);
  const int height = grid_y + rows * cell_h + 6 + line + 8 + line + pad;
  Image img(width, height, kWhite);
  draw_text(&img, pad, pad, h.title, s, kBlack);
  draw_text(&img, pad, grid_y - line - 6, h.y_title, s, kDark);
  for (int r = 0; r < rows; ++r) {
    const int y = grid_y + r * cell_h;
    draw_text(&img, grid_x - pad - text_width(h.y_labels[size_t(r)], s), y + (cell_h - line) / 2,
              h.y_labels[size_t(r)], s, kBlack);
    for (int c = 0; c < cols; ++c) {
      const double v = r < int(h.values.size()) && c < int(h.values[size_t(r)].size())
                           ? h.values[size_t(r)][size_t(c)]
                           : std::nan("");
      const int x = grid_x + c * cell_w;
      fill_rect(&img, x, y, cell_w - 1, cell_h - 1, std::isnan(v) ? kGrey : accuracy_color(v));
      if (std::isnan(v)) continue;
      const std::string text = std::to_string(int(std::lround(v * 100)));
      draw_text(&img, x + (cell_w - text_width(text, s)) / 2, y + (cell_h - line) / 2, text, s,
                kBlack);
    }
  }
  const int below = grid_y + rows * cell_h + 6;
  for (int c = 0; c < cols; ++c) {
    const std::string& l = h.x_labels[size_t(c)];
    draw_text(&img, grid_x + c * cell_w + (cell_w - text_width(l, s)) / 2, below, l, s, kBlack);
  }
  draw_text(&img, grid_x, below + line + 8, h.x_title, s, kDark);
  return img;
}

Image render_line_chart(const LineChart& c) {
  const int s = 2, line = kGlyphH * s, pad = 14;
  const int plot_w = 760, plot_h = 400, left = 90;
  const int top = pad + line + pad;
  // y in plot units: log10 of the value on a log scale.
  auto fy = [&](double y) { return c.log_y ? (y > 0 ? std::log10(y) : NAN) : y; };
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const Series& se : c.series) {
    for (size_t i = 0; i < se.x.size() && i < se.y.size(); ++i) {
      const double y = fy(se.y[i]);
      if (!std::isfinite(se.x[i]) || !std::isfinite(y)) continue;
      x0 = std::min(x0, se.x[i]), x1 = std::max(x1, se.x[i]);
      y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  }
  if (!(x1 >= x0)) x0 = 0, x1 = 1;
  if (!(y1 >= y0)) y0 = 0, y1 = 1;
  const double xs = nice_step(x1 - x0, 8);
  x0 = std::floor(x0 / xs) * xs, x1 = std::max(x0 + xs, std::ceil(x1 / xs) * xs);
  std::vector<double> yticks;  // in plot units
  double ys = 1;
  if (c.log_y) {
    y0 = std::floor(y0 * 10) / 10, y1 = std::max(y0 + 0.3, std::ceil(y1 * 10) / 10);
    for (int k = int(std::floor(y0)); k <= int(std::ceil(y1)); ++k) {
      for (double m : {1.0, 2.0, 5.0}) {
        const double t = std::log10(m) + k;
        if (t >= y0 - 1e-9 && t <= y1 + 1e-9) yticks.push_back(t);
      }
    }
  } else {
    ys = nice_step(y1 - y0, 6);
    y0 = std::floor(y0 / ys) * ys, y1 = std::max(y0 + ys, std::ceil(y1 / ys) * ys);
    for (double y = y0; y <= y1 + ys * 1e-6; y += ys) yticks.push_back(y);
  }
  auto px = [&](double x) { return left + int(std::lround((x - x0) / (x1 - x0) * plot_w)); };
  auto py = [&](double y) { return top + plot_h - int(std::lround((y - y0) / (y1 - y0) * plot_h)); };
  int name_w = 0;
  for (const Series& se : c.series) name_w = std::max(name_w, text_width(se.name, s));
  const int legend_cols = std::max(1, plot_w / (name_w + 48)), legend_row = line + 8;
  const int legend_rows = (int(c.series.size()) + legend_cols - 1) / legend_cols;
  const int axis_bottom = top + plot_h + 8 + line + 8 + line;
  const int width = std::max(left + plot_w + pad + 10, left + name_w + 48);
  const int height = axis_bottom + pad + legend_rows * legend_row + pad;
  Image img(width, height, kWhite);
  draw_text(&img, pad, pad, c.title, s, kBlack);
  for (double x = x0; x <= x1 + xs * 1e-6; x += xs) {
    draw_line(&img, px(x), top, px(x), top + plot_h, {235, 235, 235}, 1);
    const std::string l = tick_label(x, xs);
    draw_text(&img, px(x) - text_width(l, s) / 2, top + plot_h + 8, l, s, kBlack);
  }
  for (double t : yticks) {
    draw_line(&img, left, py(t), left + plot_w, py(t), {235, 235, 235}, 1);
    const double v = c.log_y ? std::pow(10.0, t) : t;
    const std::string l = tick_label(v, c.log_y ? std::min(1.0, std::pow(10.0, std::floor(t))) : ys);
    draw_text(&img, left - 8 - text_width(l, s), py(t) - line / 2, l, s, kBlack);
  }
  draw_line(&img, left, top, left, top + plot_h, kBlack, 1);
  draw_line(&img, left, top + plot_h, left + plot_w, top + plot_h, kBlack, 1);
  draw_text(&img, left + plot_w - text_width(c.x_title, s), top + plot_h + 8 + line + 8,
            c.x_title, s, kDark);
  draw_text(&img, left + 6, top + 6, c.y_title, s, kDark);
  for (size_t i = 0; i < c.series.size(); ++i) {
    const Series& se = c.series[i];
    const Rgb color = kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))];
    for (size_t j = 1; j < se.x.size() && j < se.y.size(); ++j) {
      const double a = fy(se.y[j - 1]), b = fy(se.y[j]);
      if (!std::isfinite(a) || !std::isfinite(b)) continue;
      draw_line(&img, px(se.x[j - 1]), py(a), px(se.x[j]), py(b), color, 2);
    }
    const int lx = left + int(i % size_t(legend_cols)) * (name_w + 48);
    const int ly = axis_bottom + pad + int(i / size_t(legend_cols)) * legend_row;
    fill_rect(&img, lx, ly + line / 2 - 2, 24, 4, color);
    draw_text(&img, lx + 32, ly, se.name, s, kBlack);
  }
  return img;
}

}  // namespace tidal::launch
