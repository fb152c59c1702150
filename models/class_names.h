#pragma once
// Class names for the label sets the programs print: ImageNet's 1000 (torchvision's category
// list, models/imagenet_classes.txt, compiled in) and Fashion-MNIST's 10.
#include <string>
#include <vector>

namespace dl::models {

const std::vector<std::string>& imagenet_classes();
const std::vector<std::string>& fashion_mnist_classes();
// The names for a classifier with `num_classes` outputs: ImageNet's for 1000, Fashion-MNIST's for
// 10, else "class 0", "class 1", ...
std::vector<std::string> class_names_for(int64_t num_classes);

}  // namespace dl::models
