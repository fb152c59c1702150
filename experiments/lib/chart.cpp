#include "experiments/lib/chart.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace dl::exp {

namespace {
const data::Color kBlack{0, 0, 0, 255}, kGrid{225, 225, 225, 255};
}

data::Color chart_color(size_t i) {
  static const data::Color palette[] = {{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255},
                                        {214, 39, 40, 255},  {148, 103, 189, 255}, {140, 86, 75, 255},
                                        {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255},
                                        {23, 190, 207, 255}};
  return palette[i % 10];
}

void draw_line(data::Image& img, double x0, double y0, double x1, double y1, data::Color color, int64_t thickness) {
  double len = std::max(std::abs(x1 - x0), std::abs(y1 - y0));
  int64_t steps = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(len * 2)));
  int64_t h = thickness / 2;
  for (int64_t s = 0; s <= steps; ++s) {
    double t = static_cast<double>(s) / static_cast<double>(steps);
    int64_t x = std::lround(x0 + t * (x1 - x0)), y = std::lround(y0 + t * (y1 - y0));
    data::fill_rect(img, x - h, y - h, thickness, thickness, color);
  }
}

ChartFrame draw_chart_frame(data::Image& img, const ChartOptions& o) {
  ChartFrame f{70, 48, o.width - o.right_margin, o.height - 55, o.x_min, o.x_max, o.y_min, o.y_max};
  data::draw_text(img, 10, 10, o.title, 2, kBlack);
  for (double y : o.y_ticks) {
    int64_t py = std::lround(f.py(y));
    data::fill_rect(img, f.left, py, f.right - f.left, 1, kGrid);
    std::string s = fmt::format("{:g}", y);
    data::draw_text(img, f.left - 8 - data::text_width(s, 1), py - 4, s, 1, kBlack);
  }
  for (size_t i = 0; i < o.x_ticks.size(); ++i) {
    int64_t px = std::lround(f.px(o.x_ticks[i]));
    data::fill_rect(img, px, f.bottom, 1, 5, kBlack);
    std::string s = i < o.x_tick_labels.size() ? o.x_tick_labels[i] : fmt::format("{:g}", o.x_ticks[i]);
    data::draw_text(img, px - data::text_width(s, 1) / 2, f.bottom + 9, s, 1, kBlack);
  }
  data::fill_rect(img, f.left, f.top, 1, f.bottom - f.top + 1, kBlack);
  data::fill_rect(img, f.left, f.bottom, f.right - f.left + 1, 1, kBlack);
  data::draw_text(img, (f.left + f.right - data::text_width(o.x_label, 1)) / 2, f.bottom + 26, o.x_label, 1, kBlack);
  data::draw_text(img, 8, f.top - 13, o.y_label, 1, kBlack);
  return f;
}

data::Image draw_line_chart(const ChartOptions& opt, const std::vector<ChartSeries>& series) {
  ChartOptions o = opt;
  int64_t legend_w = 0;
  if (o.legend)
    for (const auto& s : series) legend_w = std::max(legend_w, data::text_width(s.name, 1) + 44);
  o.width += legend_w;
  o.right_margin += legend_w;
  data::Image img(o.width, o.height, 3, 255);
  ChartFrame f = draw_chart_frame(img, o);
  for (const auto& s : series) {
    for (size_t i = 0; i + 1 < s.points.size(); ++i)
      draw_line(img, f.px(s.points[i].first), f.py(s.points[i].second), f.px(s.points[i + 1].first),
                f.py(s.points[i + 1].second), s.color, s.thickness);
    for (const auto& p : s.points) data::fill_rect(img, std::lround(f.px(p.first)) - 3, std::lround(f.py(p.second)) - 3, 7, 7, s.color);
  }
  if (o.legend) {  // right of the plot area, one line per series
    int64_t x = f.right + 24, y = f.top + 4;
    for (const auto& s : series) {
      data::fill_rect(img, x, y + 2, 16, std::max<int64_t>(3, s.thickness), s.color);
      data::draw_text(img, x + 22, y, s.name, 1, kBlack);
      y += 16;
    }
  }
  return img;
}

data::Image tile_images(const std::vector<data::Image>& images, int64_t cols, int64_t pad) {
  int64_t cw = 0, ch = 0;
  for (const auto& im : images) {
    cw = std::max(cw, im.width);
    ch = std::max(ch, im.height);
  }
  int64_t n = static_cast<int64_t>(images.size()), rows = std::max<int64_t>(1, (n + cols - 1) / cols);
  cols = std::max<int64_t>(1, std::min(cols, n));
  data::Image out(pad + cols * (cw + pad), pad + rows * (ch + pad), 3, 255);
  for (int64_t i = 0; i < n; ++i) {
    const auto& im = images[i];
    int64_t ox = pad + (i % cols) * (cw + pad), oy = pad + (i / cols) * (ch + pad);
    for (int64_t y = 0; y < im.height; ++y)
      for (int64_t x = 0; x < im.width; ++x)
        for (int64_t c = 0; c < 3; ++c) out.at(oy + y, ox + x, c) = im.at(y, x, im.channels >= 3 ? c : 0);
  }
  return out;
}

}  // namespace dl::exp
