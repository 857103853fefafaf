// SPDX-License-Identifier: Apache-2.0
// Safetensors reader: files written by a small helper here read back exactly; every malformed
// header, truncation and offset error is a clean one-line Status; sharded checkpoints through
// model.safetensors.index.json; the real stories260K checkpoint.
#include "model/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/testing/safetensors_writer.h"
#include "tests/testing/testing.h"

namespace tidal::model {
namespace {

using testing::bytes_of;
using testing::TestTensor;

std::string raw_file(const std::string& header, const std::string& data) {
  return testing::raw_safetensors(header, data);
}
std::string build_file(const std::vector<TestTensor>& tensors) {
  return testing::build_safetensors(tensors);
}

std::vector<TestTensor> sample_tensors() {
  std::vector<f16> h;
  std::vector<bf16> b;
  for (float x : {1.0f, -2.5f, 0.125f, 65504.0f, 3.0f, -0.0f}) {
    h.push_back(f32_to_f16(x));
    b.push_back(f32_to_bf16(x));
  }
  return {
      {"a.f32",
       "F32",
       {2, 3},
       bytes_of(std::vector<float>{1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, 7.0f})},
      {"b.f16", "F16", {6}, bytes_of(h)},
      {"c.bf16", "BF16", {3, 2}, bytes_of(b)},
      {"d.i64", "I64", {1}, bytes_of(std::vector<int64_t>{-7})},
      {"e.bool", "BOOL", {2}, std::string("\x01\x00", 2)},
  };
}

Status parse(const std::string& file, std::vector<SafetensorsTensor>* out) {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "t.st", out);
}

// Expects a one-line error containing every fragment.
void expect_error(const std::string& file, std::vector<std::string> fragments) {
  std::vector<SafetensorsTensor> out;
  const Status s = parse(file, &out);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("t.st"), std::string::npos) << s.message();
  for (const std::string& f : fragments) {
    EXPECT_NE(s.message().find(f), std::string::npos) << "want '" << f << "' in " << s.message();
  }
}

std::string tensor_json(const std::string& name, const std::string& dtype, const std::string& shape,
                        const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}";
}

TEST(SafetensorsParse, ReadsBackExactly) {
  const std::vector<TestTensor> want = sample_tensors();
  const std::string file = build_file(want);
  std::vector<SafetensorsTensor> got;
  ASSERT_TRUE(parse(file, &got).ok());
  ASSERT_EQ(got.size(), want.size());
  const DType dtypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kI64, DType::kU8};
  for (size_t i = 0; i < want.size(); ++i) {  // both sorted by name
    EXPECT_EQ(got[i].name, want[i].name);
    EXPECT_EQ(got[i].dtype, dtypes[i]);
    EXPECT_EQ(got[i].shape, want[i].shape);
    EXPECT_EQ(got[i].file, "t.st");
    ASSERT_EQ(got[i].nbytes, want[i].bytes.size());
    EXPECT_EQ(std::memcmp(got[i].data, want[i].bytes.data(), got[i].nbytes), 0) << got[i].name;
    EXPECT_GE(got[i].data, reinterpret_cast<const uint8_t*>(file.data()));
    EXPECT_LE(got[i].data + got[i].nbytes,
              reinterpret_cast<const uint8_t*>(file.data()) + file.size());
  }
  float f[6];
  std::memcpy(f, got[0].data, sizeof(f));
  EXPECT_EQ(f[2], 3.25f);
  f16 h[6];
  std::memcpy(h, got[1].data, sizeof(h));
  EXPECT_EQ(f16_to_f32(h[3]), 65504.0f);
  bf16 b[6];
  std::memcpy(b, got[2].data, sizeof(b));
  EXPECT_EQ(bf16_to_f32(b[1]), -2.5f);
}

TEST(SafetensorsParse, EmptyAndScalarTensors) {
  const std::string header = "{" + tensor_json("empty", "F32", "[0, 4]", "[0, 0]") + "," +
                             tensor_json("scalar", "F32", "[]", "[0, 4]") + "," +
                             tensor_json("empty2", "BF16", "[3, 0]", "[2, 2]") + "}";
  std::vector<SafetensorsTensor> got;
  ASSERT_TRUE(parse(raw_file(header, "abcd"), &got).ok());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].nbytes, 0u);
  EXPECT_EQ(got[2].name, "scalar");
  EXPECT_EQ(got[2].nbytes, 4u);
  EXPECT_TRUE(got[2].shape.empty());
}

TEST(SafetensorsParse, TooShortAndHeaderBeyondFile) {
  expect_error("", {"too short"});
  expect_error("\x05\x00\x00", {"too short"});
  expect_error(raw_file("{}", "").substr(0, 9), {"header length 2", "exceeds"});
  std::string huge(8, '\xff');
  expect_error(huge + "{}", {"header length"});
}

TEST(SafetensorsParse, EveryTruncation) {
  const std::string file = build_file(sample_tensors());
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | uint8_t(file[size_t(i)]);
  for (size_t n = 0; n < file.size(); ++n) {
    // Exact-size heap copy so a sanitizer sees any read past the end.
    std::vector<uint8_t> cut(file.begin(), file.begin() + long(n));
    std::vector<SafetensorsTensor> out;
    const Status s = parse_safetensors(cut.data(), cut.size(), "t.st", &out);
    ASSERT_FALSE(s.ok()) << "a cut at " << n << " of " << file.size() << " parsed";
    EXPECT_EQ(s.message().find('\n'), std::string::npos);
    EXPECT_NE(s.message().find("t.st"), std::string::npos);
  }
  // Trailing bytes after the data are harmless.
  std::vector<SafetensorsTensor> out;
  EXPECT_TRUE(parse(file, &out).ok());
  EXPECT_TRUE(parse(file + "xyz", &out).ok());
  EXPECT_GT(file.size(), 8 + header_len);
}

TEST(SafetensorsParse, HeaderNotJsonOrNotObject) {
  expect_error(raw_file("{\"a\":", ""), {"not valid JSON"});
  expect_error(raw_file("[1,2]", ""), {"object"});
  expect_error(raw_file("", ""), {"JSON"});
  expect_error(raw_file("{\"x\":\n\x01", ""), {"JSON"});
  expect_error(raw_file("{\"__metadata__\":[1]}", ""), {"__metadata__"});
  expect_error(raw_file("{\"__metadata__\":{\"k\":1}}", ""), {"__metadata__", "k"});
}

TEST(SafetensorsParse, FieldErrorsNameTheTensor) {
  const std::string data(16, '\0');
  const struct {
    std::string entry;
    std::vector<std::string> want;
  } cases[] = {
      {"\"w\":{\"shape\":[4],\"data_offsets\":[0,16]}", {"'w'", "dtype"}},
      {"\"w\":{\"dtype\":5,\"shape\":[4],\"data_offsets\":[0,16]}", {"'w'", "dtype"}},
      {"\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}", {"'w'", "shape"}},
      {"\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}", {"'w'", "shape"}},
      {"\"w\":{\"dtype\":\"F32\",\"shape\":[4]}", {"'w'", "data_offsets"}},
      {"\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}", {"'w'", "data_offsets"}},
      {"\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,\"16\"]}",
       {"'w'", "data_offsets"}},
      {"\"w\":[1]", {"'w'", "object"}},
      {tensor_json("w", "F64", "[2]", "[0,16]"), {"'w'", "F64"}},
      {tensor_json("w", "Q4_K", "[4]", "[0,16]"), {"'w'", "Q4_K"}},
      {tensor_json("w", "F32", "[-4]", "[0,16]"), {"'w'", "shape", "-4"}},
      {tensor_json("w", "F32", "[2.5]", "[0,16]"), {"'w'", "shape"}},
      {tensor_json("w", "F32", "[4, null]", "[0,16]"), {"'w'", "shape"}},
      {tensor_json("w", "F32", "[4]", "[-1,15]"), {"'w'", "data_offsets"}},
      {tensor_json("w", "F32", "[4294967296, 4294967296]", "[0,16]"), {"'w'", "overflow"}},
      {tensor_json("w", "F32", "[18446744073709551615]", "[0,16]"), {"'w'", "shape"}},
      {tensor_json("w", "F32", "[4611686018427387904]", "[0,16]"), {"'w'", "overflow"}},
      {tensor_json("w", "F32", "[2]", "[8,0]"), {"'w'", "before begin"}},
      {tensor_json("w", "F32", "[4]", "[4,20]"), {"'w'", "beyond the data section"}},
      {tensor_json("w", "F32", "[4]", "[0,18446744073709551615]"), {"'w'", "data_offsets"}},
      {tensor_json("w", "F32", "[3]", "[0,16]"), {"'w'", "16 bytes", "need 12"}},
      {tensor_json("w", "BF16", "[4]", "[0,16]"), {"'w'", "need 8"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.entry);
    expect_error(raw_file("{" + c.entry + "}", data), c.want);
  }
}

// A dim nested a million lists deep is named, not dumped into the message: dump() recurses once
// per level and ran out of stack.
TEST(SafetensorsParse, DeeplyNestedDimIsAnErrorNotACrash) {
  const size_t depth = 1000000;
  const std::string dim = std::string(depth, '[') + std::string(depth, ']');
  expect_error(raw_file("{" + tensor_json("w", "F32", "[" + dim + "]", "[0,16]") + "}",
                        std::string(16, '\0')),
               {"'w'", "shape", "nested"});
}

TEST(SafetensorsParse, OverlapsAndDuplicates) {
  const std::string data(32, '\0');
  expect_error(raw_file("{" + tensor_json("a", "F32", "[4]", "[0,16]") + "," +
                            tensor_json("b", "F32", "[4]", "[8,24]") + "}",
                        data),
               {"overlap", "'a'", "'b'"});
  expect_error(raw_file("{" + tensor_json("a", "F32", "[2]", "[8,16]") + "," +
                            tensor_json("b", "F32", "[8]", "[0,32]") + "}",
                        data),
               {"overlap"});
  expect_error(raw_file("{" + tensor_json("a", "F32", "[4]", "[0,16]") + "," +
                            tensor_json("b", "F32", "[4]", "[0,16]") + "}",
                        data),
               {"overlap"});
  expect_error(raw_file("{" + tensor_json("a", "F32", "[4]", "[0,16]") + "," +
                            tensor_json("a", "F32", "[4]", "[16,32]") + "}",
                        data),
               {"'a'", "twice"});
  // Adjacent is fine; holes between tensors are tolerated.
  std::vector<SafetensorsTensor> out;
  EXPECT_TRUE(parse(raw_file("{" + tensor_json("a", "F32", "[4]", "[0,16]") + "," +
                                 tensor_json("b", "F32", "[2]", "[24,32]") + "}",
                             data),
                    &out)
                  .ok());
  // Nested duplicate keys (inside an entry) are not tensor duplicates.
  EXPECT_TRUE(parse(raw_file("{\"__metadata__\":{\"k\":\"v\"},"
                             "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                             data),
                    &out)
                  .ok());
}

TEST(SafetensorsParse, ControlCharactersStayOnOneLine) {
  expect_error(raw_file("{" + tensor_json("bad\\nname", "F32", "[4]", "[0,99]") + "}",
                        std::string(16, '\0')),
               {"bad?name"});
}

TEST(SafetensorsFile, OpenReadsBack) {
  const std::string dir = testing::temp_dir("st_file");
  const std::vector<TestTensor> want = sample_tensors();
  testing::write_file(dir + "/model.safetensors", build_file(want));
  std::unique_ptr<SafetensorsFile> file;
  ASSERT_TRUE(SafetensorsFile::open(dir + "/model.safetensors", &file).ok());
  ASSERT_EQ(file->tensors().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const SafetensorsTensor& t = file->tensors()[i];
    EXPECT_EQ(t.file, dir + "/model.safetensors");
    ASSERT_EQ(t.nbytes, want[i].bytes.size());
    EXPECT_EQ(std::memcmp(t.data, want[i].bytes.data(), t.nbytes), 0);
  }
}

TEST(SafetensorsFile, MissingEmptyAndCorrupt) {
  const std::string dir = testing::temp_dir("st_bad");
  std::unique_ptr<SafetensorsFile> file;
  Status s = SafetensorsFile::open(dir + "/nope.safetensors", &file);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find(dir + "/nope.safetensors"), std::string::npos) << s.message();
  testing::write_file(dir + "/empty.safetensors", "");
  s = SafetensorsFile::open(dir + "/empty.safetensors", &file);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("empty"), std::string::npos) << s.message();
  s = SafetensorsFile::open(dir, &file);
  EXPECT_FALSE(s.ok());
  const std::string good = build_file(sample_tensors());
  testing::write_file(dir + "/cut.safetensors", good.substr(0, good.size() - 3));
  s = SafetensorsFile::open(dir + "/cut.safetensors", &file);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cut.safetensors"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("'d.i64'"), std::string::npos) << s.message();  // ends past the cut
  EXPECT_EQ(file, nullptr);
}

TEST(SafetensorsCheckpoint, SingleFile) {
  const std::string dir = testing::temp_dir("st_single");
  testing::write_file(dir + "/model.safetensors", build_file(sample_tensors()));
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
  ASSERT_TRUE(SafetensorsCheckpoint::open(dir, &ckpt).ok());
  EXPECT_EQ(ckpt->names().size(), 5u);
  ASSERT_NE(ckpt->find("c.bf16"), nullptr);
  EXPECT_EQ(ckpt->find("c.bf16")->dtype, DType::kBF16);
  EXPECT_EQ(ckpt->find("zzz"), nullptr);
  EXPECT_EQ(ckpt->total_bytes(), 24u + 12u + 12u + 8u + 2u);
}

TEST(SafetensorsCheckpoint, NothingThere) {
  const std::string dir = testing::temp_dir("st_none");
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
  const Status s = SafetensorsCheckpoint::open(dir, &ckpt);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no model.safetensors or model.safetensors.index.json in " + dir);
}

const char* kIndex = R"({"metadata": {"total_size": 40}, "weight_map": {
  "a.f32": "model-00001-of-00002.safetensors",
  "b.f16": "model-00001-of-00002.safetensors",
  "c.bf16": "model-00002-of-00002.safetensors"}})";

std::string sharded_dir(const std::string& index) {
  const std::string dir = testing::temp_dir("st_sharded");
  const std::vector<TestTensor> t = sample_tensors();
  testing::write_file(dir + "/model-00001-of-00002.safetensors", build_file({t[0], t[1]}));
  testing::write_file(dir + "/model-00002-of-00002.safetensors", build_file({t[2]}));
  testing::write_file(dir + "/model.safetensors.index.json", index);
  return dir;
}

TEST(SafetensorsCheckpoint, ShardedWithIndex) {
  const std::string dir = sharded_dir(kIndex);
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
  const Status s = SafetensorsCheckpoint::open(dir, &ckpt);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(ckpt->names(), std::vector<std::string>({"a.f32", "b.f16", "c.bf16"}));
  ASSERT_NE(ckpt->find("c.bf16"), nullptr);
  EXPECT_EQ(ckpt->find("c.bf16")->file, dir + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(ckpt->find("a.f32")->file, dir + "/model-00001-of-00002.safetensors");
  EXPECT_EQ(ckpt->total_bytes(), 24u + 12u + 12u);
  const std::vector<TestTensor> want = sample_tensors();
  EXPECT_EQ(std::memcmp(ckpt->find("c.bf16")->data, want[2].bytes.data(), 12), 0);
}

TEST(SafetensorsCheckpoint, IndexErrors) {
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
  // A shard that is not there.
  std::string text = kIndex;
  text.replace(text.find("model-00002"), 11, "model-00003");
  Status s = SafetensorsCheckpoint::open(sharded_dir(text), &ckpt);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model-00003-of-00002.safetensors"), std::string::npos) << s.message();
  // A tensor the shard does not hold.
  text = kIndex;
  text.replace(text.find("\"c.bf16\""), 8, "\"d.i64\"");
  s = SafetensorsCheckpoint::open(sharded_dir(text), &ckpt);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'d.i64'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("model-00002-of-00002.safetensors"), std::string::npos);
  // Escaping the directory.
  for (const char* shard : {"../model-00001-of-00002.safetensors", "/etc/passwd", "sub/x", ""}) {
    text = kIndex;
    const size_t at = text.find("model-00002-of-00002.safetensors");
    text.replace(at, std::strlen("model-00002-of-00002.safetensors"), shard);
    s = SafetensorsCheckpoint::open(sharded_dir(text), &ckpt);
    ASSERT_FALSE(s.ok()) << shard;
    EXPECT_NE(s.message().find("not a plain file name"), std::string::npos) << s.message();
  }
  // Malformed index files.
  for (const char* bad : {"{", "[]", "{\"weight_map\": []}", "{\"weight_map\": {}}",
                          "{\"weight_map\": {\"a.f32\": 3}}"}) {
    s = SafetensorsCheckpoint::open(sharded_dir(bad), &ckpt);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("model.safetensors.index.json"), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos);
  }
}

TEST(SafetensorsCheckpoint, Stories260K) {
  TIDAL_SKIP_WITHOUT_SHARED("models/stories260K/hf/model.safetensors");
  std::unique_ptr<SafetensorsCheckpoint> ckpt;
  const Status s =
      SafetensorsCheckpoint::open(testing::shared_path("models/stories260K/hf"), &ckpt);
  ASSERT_TRUE(s.ok()) << s.message();
  const SafetensorsTensor* t = ckpt->find("model.embed_tokens.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::kF32);
  EXPECT_EQ(t->shape, std::vector<int64_t>({512, 64}));
  EXPECT_EQ(t->nbytes, 512u * 64u * 4u);
  EXPECT_NE(ckpt->find("model.layers.4.mlp.down_proj.weight"), nullptr);
  EXPECT_NE(ckpt->find("model.norm.weight"), nullptr);
}

}  // namespace
}  // namespace tidal::model
