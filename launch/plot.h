// SPDX-License-Identifier: Apache-2.0
// The accuracy harnesses' two pictures, drawn into an Image (launch/png.h) with a built-in 5x7
// pixel font (upper case, digits, punctuation): a heatmap of retrieval accuracy (tidal niah: one
// per policy, context length x needle depth) and line curves (tidal ppl: perplexity against
// position, one line per policy).
#pragma once

#include <string>
#include <vector>

#include "launch/png.h"

namespace tidal::launch {

struct Heatmap {
  std::string title;
  std::string x_title, y_title;
  std::vector<std::string> x_labels;        // columns (depths)
  std::vector<std::string> y_labels;        // rows, top to bottom (lengths)
  std::vector<std::vector<double>> values;  // [rows][cols] in [0, 1]; NaN: not measured
};

struct Series {
  std::string name;
  std::vector<double> x, y;
};

struct LineChart {
  std::string title;
  std::string x_title, y_title;
  std::vector<Series> series;
  bool log_y = false;  // y on a log scale (ticks 1, 2, 5 x 10^k); values <= 0 are skipped
};

// Red (0) through yellow to green (1); grey for NaN. Each cell prints its value in percent.
Image render_heatmap(const Heatmap& h);
// Axes with round ticks over the data's range, one colour per series (12, then repeated), a
// legend below.
Image render_line_chart(const LineChart& c);

// Text in the 5x7 font at `scale` (letters drawn upper case; unknown characters as '?').
void draw_text(Image* img, int x, int y, const std::string& text, int scale, Rgb color);
int text_width(const std::string& text, int scale);

}  // namespace tidal::launch
