#pragma once
// Small charts drawn with the framework's own image drawing (data/image_draw.h): line charts with
// axes, ticks and a legend, and tiling several images into one figure. Used by the extended
// study's programs (robustness curves, reliability diagrams).
#include <string>
#include <utility>
#include <vector>

#include "data/image_draw.h"

namespace dl::exp {

struct ChartSeries {
  std::string name;
  data::Color color;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in order; a marker at each
  int64_t thickness = 2;
};

struct ChartOptions {
  std::string title, x_label, y_label;
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  std::vector<double> x_ticks, y_ticks;
  std::vector<std::string> x_tick_labels;  // empty: the tick values
  int64_t width = 560, height = 400;
  bool legend = true;      // to the right of the plot area
  int64_t right_margin = 20;  // pixels right of the plot area (draw_line_chart widens it for the legend)
};

// A distinct colour per series index (a fixed palette, cycled).
data::Color chart_color(size_t i);

// A line from (x0, y0) to (x1, y1) in pixels, `thickness` pixels wide, clipped to the image.
void draw_line(data::Image& img, double x0, double y0, double x1, double y1, data::Color color, int64_t thickness = 1);

// Plot area, axes, ticks and labels; returns the pixel mapping for extra drawing.
struct ChartFrame {
  int64_t left, top, right, bottom;  // the plot area in pixels
  double x_min, x_max, y_min, y_max;
  double px(double x) const { return left + (x - x_min) / (x_max - x_min) * (right - left); }
  double py(double y) const { return bottom - (y - y_min) / (y_max - y_min) * (bottom - top); }
};
ChartFrame draw_chart_frame(data::Image& img, const ChartOptions& o);
data::Image draw_line_chart(const ChartOptions& o, const std::vector<ChartSeries>& series);

// Images tiled row by row, `cols` per row, on white, each cell the size of the largest image.
data::Image tile_images(const std::vector<data::Image>& images, int64_t cols, int64_t pad = 10);

}  // namespace dl::exp
