/*
 * CPU harness for the adapler::TokenDrop IPluginV3 (tests/test_trt_plugin_build.py).
 *
 * Compiled against real TensorRT headers, it plays the part of libnvinfer for the plugin library:
 * a fake plugin registry (this executable exports getPluginRegistry(), so the library's static
 * initializer registers into it when dlopen'ed, as with trtexec --staticPlugins), a fake
 * IExprBuilder that records symbolic output shapes, and a logger for getCreators/setLoggerFinder.
 * It drives the build-phase callbacks through the creator and prints what it observed as one JSON
 * object; the Python test holds the expectations. Nothing here runs a kernel or TensorRT itself.
 *
 *   plugin_harness static|dyn path/to/libadapler_token_drop_trt[_dyn].so
 */
#include "NvInferRuntime.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

// ---------------------------------------------------------------------------------------------
// JSON output
// ---------------------------------------------------------------------------------------------
std::string quote(std::string const& s)
{
    std::string out = "\"";
    for (char c : s)
    {
        if (c == '"' || c == '\\') { out += '\\'; }
        out += (c == '\n') ? ' ' : c;
    }
    return out + "\"";
}

std::string join(std::vector<std::string> const& items)
{
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i)
    {
        out += (i ? ", " : "") + items[i];
    }
    return out + "]";
}

std::string typeName(DataType t)
{
    switch (static_cast<int32_t>(t))
    {
    case 0: return "FLOAT";
    case 1: return "HALF";
    case 2: return "INT8";
    case 3: return "INT32";
    case 4: return "BOOL";
    case 5: return "UINT8";
    case 6: return "FP8";
    case 7: return "BF16";
    case 8: return "INT64";
    case 9: return "INT4";
    case 10: return "FP4";
    case 11: return "E8M0";
    default: return "DT" + std::to_string(static_cast<int32_t>(t));
    }
}

std::vector<DataType> allTypes()
{
    std::vector<DataType> types;
    for (int32_t i = 0; i < EnumMax<DataType>(); ++i)
    {
        types.push_back(static_cast<DataType>(i));
    }
    return types;
}

// ---------------------------------------------------------------------------------------------
// Fake libnvinfer pieces
// ---------------------------------------------------------------------------------------------
struct Logger : public ILogger
{
    std::vector<std::string> messages;
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        messages.push_back(std::to_string(static_cast<int32_t>(severity)) + ": " + (msg ? msg : ""));
    }
};

struct LoggerFinder : public ILoggerFinder
{
    Logger logger;
    ILogger* findLogger() noexcept override { return &logger; }
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" // 10.x still declares the IPluginCreator (V2) methods
class FakeRegistry : public IPluginRegistry
{
public:
    std::vector<std::pair<IPluginCreatorInterface*, std::string>> registered;

    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const ns) noexcept override
    {
        registered.emplace_back(&creator, ns != nullptr ? ns : "<null>");
        return true;
    }
    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
    bool isParentSearchEnabled() const override { return false; }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(AsciiChar const*) noexcept override { return nullptr; }
    void deregisterLibrary(PluginLibraryHandle) noexcept override {}
    IPluginCreatorInterface* const* getAllCreators(int32_t* const n) const noexcept override { return (*n = 0, nullptr); }
    IPluginCreatorInterface* getCreator(AsciiChar const* const, AsciiChar const* const, AsciiChar const* const) noexcept override { return nullptr; }
    bool deregisterCreator(IPluginCreatorInterface const&) noexcept override { return false; }
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override { return nullptr; }
    int32_t releasePluginResource(AsciiChar const*) noexcept override { return -1; }
#if NV_TENSORRT_MAJOR >= 11
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const n) noexcept override { return (*n = 0, nullptr); }
#else
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override { return false; }
    IPluginCreator* const* getPluginCreatorList(int32_t* const n) const noexcept override { return (*n = 0, nullptr); }
    IPluginCreator* getPluginCreator(AsciiChar const* const, AsciiChar const* const, AsciiChar const* const) noexcept override { return nullptr; }
    bool deregisterCreator(IPluginCreator const&) noexcept override { return false; }
#endif
};
#pragma GCC diagnostic pop

FakeRegistry& registry()
{
    static FakeRegistry sRegistry;
    return sRegistry;
}

//! A symbolic dimension: a name ("B", "T"), a constant, or an operation on other expressions.
class SymImpl : public apiv::VDimensionExpr
{
public:
    SymImpl(std::string text, bool constant, int64_t value, bool size)
        : mText(std::move(text)), mConstant(constant), mValue(value), mSize(size)
    {
    }
    bool isConstant() const override { return mConstant; }
    int64_t getConstantValue() const override { return mConstant ? mValue : std::numeric_limits<int64_t>::min(); }
    bool isSizeTensor() const override { return mSize; }
    std::string mText;
    bool mConstant;
    int64_t mValue;
    bool mSize;
};

class Sym : public IDimensionExpr
{
public:
    explicit Sym(SymImpl* impl) { mImpl = impl; }
    ~Sym() noexcept override = default;
};

class BuilderImpl : public apiv::VExprBuilder
{
public:
    struct SizeDecl
    {
        int32_t index;
        std::string opt;
        std::string upper;
    };
    std::vector<SizeDecl> sizeDecls;

    IDimensionExpr const* symbol(std::string const& name) { return make(name, false, 0, false); }
    std::string text(IDimensionExpr const* e) const
    {
        auto it = mTexts.find(e);
        return it == mTexts.end() ? "<foreign>" : it->second->mText;
    }
    IDimensionExpr const* constant(int64_t value) override
    {
        return make(std::to_string(value), true, value, false);
    }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
    {
        static char const* const kNames[] = {"sum", "prod", "max", "min", "sub", "eq", "less", "floor_div", "ceil_div"};
        auto const i = static_cast<int32_t>(op);
        std::string const name = (i >= 0 && i < 9) ? kNames[i] : "op" + std::to_string(i);
        return make(name + "(" + text(&a) + "," + text(&b) + ")", false, 0, false);
    }
    IDimensionExpr const* declareSizeTensor(int32_t index, IDimensionExpr const& opt, IDimensionExpr const& upper) override
    {
        sizeDecls.push_back({index, text(&opt), text(&upper)});
        return make("size" + std::to_string(index), false, 0, true);
    }

private:
    IDimensionExpr const* make(std::string text, bool constant, int64_t value, bool size)
    {
        mImpls.emplace_back(new SymImpl(std::move(text), constant, value, size));
        mSyms.emplace_back(new Sym(mImpls.back().get()));
        mTexts[mSyms.back().get()] = mImpls.back().get();
        return mSyms.back().get();
    }
    std::deque<std::unique_ptr<SymImpl>> mImpls;
    std::deque<std::unique_ptr<Sym>> mSyms;
    std::map<IDimensionExpr const*, SymImpl const*> mTexts;
};

class Builder : public IExprBuilder
{
public:
    explicit Builder(apiv::VExprBuilder* impl) { mImpl = impl; }
    ~Builder() noexcept override = default;
};

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------
struct Field
{
    char const* name;
    std::string bytes;
    PluginFieldType type;
};

IPluginV3* create(IPluginCreatorV3One* creator, std::vector<Field> const& spec)
{
    std::vector<PluginField> fields;
    for (auto const& f : spec)
    {
        fields.emplace_back(f.name, f.bytes.data(), f.type, static_cast<int32_t>(f.bytes.size()));
    }
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.empty() ? nullptr : fields.data()};
    return creator->createPlugin("token_drop_0", &fc, TensorRTPhase::kBUILD);
}

std::string createCases(IPluginCreatorV3One* creator)
{
    int32_t const one = 1;
    std::string const oneBytes(reinterpret_cast<char const*>(&one), sizeof(one));
    // As onnx-tensorrt's loadFields passes string attributes: kCHAR, NUL-terminated, length = size + 1.
    std::vector<Field> const parser{{"plugin_version", std::string("1", 2), PluginFieldType::kCHAR},
        {"plugin_namespace", std::string("adapler", 8), PluginFieldType::kCHAR}};
    std::map<std::string, std::vector<Field>> cases{
        {"no_fields", {}},
        {"parser_fields", parser},
        {"python_api_fields", {{"plugin_version", "1", PluginFieldType::kCHAR},
                                  {"plugin_namespace", "adapler", PluginFieldType::kCHAR}}},
        {"unknown_field_ignored", {{"alpha", oneBytes, PluginFieldType::kINT32}, parser[0], parser[1]}},
        {"wrong_version", {{"plugin_version", std::string("2", 2), PluginFieldType::kCHAR}, parser[1]}},
        {"wrong_namespace", {parser[0], {"plugin_namespace", std::string("other", 6), PluginFieldType::kCHAR}}},
        {"version_prefix_only", {{"plugin_version", std::string("10", 3), PluginFieldType::kCHAR}}},
        {"version_not_a_string", {{"plugin_version", oneBytes, PluginFieldType::kINT32}}},
    };
    std::vector<std::string> items;
    for (auto const& c : cases)
    {
        IPluginV3* plugin = create(creator, c.second);
        items.push_back(quote(c.first) + ": " + (plugin != nullptr ? "true" : "false"));
        delete plugin;
    }
    std::string out = "{";
    for (size_t i = 0; i < items.size(); ++i)
    {
        out += (i ? ", " : "") + items[i];
    }
    return out + "}";
}

std::string outputTypes(IPluginV3OneBuild* build)
{
    std::vector<std::string> items;
    for (DataType hidden : allTypes())
    {
        DataType const in[4] = {hidden, DataType::kFLOAT, DataType::kINT64, DataType::kFLOAT};
        DataType out[4] = {};
        int32_t const rc = build->getOutputDataTypes(out, 4, in, 4);
        std::vector<std::string> names;
        for (DataType t : out) { names.push_back(quote(typeName(t))); }
        items.push_back(quote(typeName(hidden)) + ": " + (rc == 0 ? join(names) : "null"));
    }
    std::string out = "{";
    for (size_t i = 0; i < items.size(); ++i)
    {
        out += (i ? ", " : "") + items[i];
    }
    return out + "}";
}

std::string shapes(IPluginV3OneBuild* build, bool thresholdPerRow, int32_t hiddenRank, std::string& sizeDecls)
{
    BuilderImpl impl;
    Builder builder(&impl);
    DimsExprs in[4];
    in[0].nbDims = hiddenRank;
    char const* const hiddenNames[3] = {"B", "T", "D"};
    for (int32_t i = 0; i < hiddenRank; ++i)
    {
        in[0].d[i] = impl.symbol(hiddenNames[i]);
    }
    for (int32_t k = 1; k <= 2; ++k)
    {
        in[k].nbDims = 2;
        in[k].d[0] = impl.symbol("B");
        in[k].d[1] = impl.symbol("T");
    }
    in[3].nbDims = 1;
    in[3].d[0] = thresholdPerRow ? impl.symbol("B") : builder.constant(1);
    DimsExprs out[4];
    int32_t const rc = build->getOutputShapes(in, 4, nullptr, 0, out, 4, builder);
    if (rc != 0) { return "null"; }
    std::vector<std::string> outs;
    for (auto const& o : out)
    {
        std::vector<std::string> dims;
        for (int32_t j = 0; j < o.nbDims; ++j)
        {
            dims.push_back(quote(impl.text(o.d[j])));
        }
        outs.push_back(join(dims));
    }
    std::vector<std::string> decls;
    for (auto const& d : impl.sizeDecls)
    {
        decls.push_back("{\"index\": " + std::to_string(d.index) + ", \"opt\": " + quote(d.opt)
            + ", \"upper\": " + quote(d.upper) + "}");
    }
    sizeDecls = join(decls);
    return join(outs);
}

//! Types supportsFormatCombination accepts at each position (LINEAR), with hidden fixed to `hidden`.
std::string formats(IPluginV3OneBuild* build, DataType hidden, TensorFormat format)
{
    DynamicPluginTensorDesc io[8] = {};
    DataType const base[8] = {hidden, DataType::kFLOAT, DataType::kINT64, DataType::kFLOAT, hidden,
        DataType::kINT64, DataType::kINT64, DataType::kINT32};
    for (int32_t i = 0; i < 8; ++i)
    {
        io[i].desc.type = base[i];
        io[i].desc.format = TensorFormat::kLINEAR;
    }
    std::vector<std::string> perPos;
    for (int32_t pos = 0; pos < 8; ++pos)
    {
        std::vector<std::string> ok;
        DynamicPluginTensorDesc trial[8];
        std::memcpy(static_cast<void*>(trial), io, sizeof(io));
        for (DataType t : allTypes())
        {
            trial[pos].desc.type = t;
            trial[pos].desc.format = format;
            if (build->supportsFormatCombination(pos, trial, 4, 4)) { ok.push_back(quote(typeName(t))); }
        }
        perPos.push_back(join(ok));
    }
    return join(perPos);
}

std::string workspace(IPluginV3OneBuild* build, int64_t B, int64_t T, int64_t D)
{
    DynamicPluginTensorDesc in[4] = {};
    DynamicPluginTensorDesc out[4] = {};
    in[0].max.nbDims = 3;
    in[0].max.d[0] = B;
    in[0].max.d[1] = T;
    in[0].max.d[2] = D;
    return std::to_string(build->getWorkspaceSize(in, 4, out, 4));
}

} // namespace

extern "C" IPluginRegistry* getPluginRegistry() noexcept
{
    return &registry();
}

int main(int argc, char** argv)
{
    if (argc != 3 || (std::strcmp(argv[1], "static") != 0 && std::strcmp(argv[1], "dyn") != 0))
    {
        std::fprintf(stderr, "usage: %s static|dyn LIBRARY\n", argv[0]);
        return 2;
    }
    bool const dynamic = std::strcmp(argv[1], "dyn") == 0;
    void* lib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr)
    {
        std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
        return 3;
    }
    std::ostringstream js;
    js << "{\"trt_version\": " << quote(std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR));
    js << ", \"registered_on_load\": [";
    for (size_t i = 0; i < registry().registered.size(); ++i)
    {
        auto* c = static_cast<IPluginCreatorV3One*>(registry().registered[i].first);
        js << (i ? ", " : "") << "{\"name\": " << quote(c->getPluginName()) << ", \"version\": "
           << quote(c->getPluginVersion()) << ", \"namespace\": " << quote(c->getPluginNamespace())
           << ", \"registry_namespace\": " << quote(registry().registered[i].second) << "}";
    }
    js << "]";
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    js << ", \"exports_getCreators\": " << (getCreators ? "true" : "false");
    js << ", \"exports_setLoggerFinder\": " << (setLoggerFinder ? "true" : "false");

    static LoggerFinder finder;
    IPluginCreatorInterface* creatorIface = nullptr;
    if (dynamic)
    {
        if (getCreators == nullptr || setLoggerFinder == nullptr)
        {
            std::fprintf(stderr, "dyn library lacks getCreators/setLoggerFinder\n");
            return 4;
        }
        setLoggerFinder(&finder);
        int32_t n = -1;
        IPluginCreatorInterface* const* creators = getCreators(n);
        js << ", \"nb_creators\": " << n;
        creatorIface = (n >= 1 && creators != nullptr) ? creators[0] : nullptr;
    }
    else if (!registry().registered.empty()) { creatorIface = registry().registered[0].first; }
    if (creatorIface == nullptr)
    {
        std::printf("%s, \"creator\": null}\n", js.str().c_str());
        return 0;
    }
    InterfaceInfo const info = creatorIface->getInterfaceInfo();
    js << ", \"creator_interface\": [" << quote(info.kind) << ", " << info.major << ", " << info.minor << "]";
    auto* creator = static_cast<IPluginCreatorV3One*>(creatorIface);
    js << ", \"creator\": {\"name\": " << quote(creator->getPluginName()) << ", \"version\": "
       << quote(creator->getPluginVersion()) << ", \"namespace\": " << quote(creator->getPluginNamespace()) << "}";

    PluginFieldCollection const* names = creator->getFieldNames();
    std::vector<std::string> fieldNames;
    for (int32_t i = 0; names != nullptr && i < names->nbFields; ++i)
    {
        fieldNames.push_back("[" + quote(names->fields[i].name) + ", "
            + std::to_string(static_cast<int32_t>(names->fields[i].type)) + "]");
    }
    js << ", \"field_names\": " << join(fieldNames);
    js << ", \"create\": " << createCases(creator);

    std::string const v(std::string("1") + '\0');
    std::string const ns(std::string("adapler") + '\0');
    std::unique_ptr<IPluginV3> plugin(create(creator,
        {{"plugin_version", v, PluginFieldType::kCHAR}, {"plugin_namespace", ns, PluginFieldType::kCHAR}}));
    if (!plugin)
    {
        std::printf("%s, \"plugin\": null}\n", js.str().c_str());
        return 0;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    js << ", \"plugin\": {\"name\": " << quote(core->getPluginName()) << ", \"version\": "
       << quote(core->getPluginVersion()) << ", \"namespace\": " << quote(core->getPluginNamespace()) << "}";
    js << ", \"nb_outputs\": " << build->getNbOutputs();
    js << ", \"output_types\": " << outputTypes(build);

    std::string decls;
    js << ", \"output_shapes\": " << shapes(build, true, 3, decls);
    js << ", \"size_tensor_decls\": " << decls;
    std::string unused;
    js << ", \"output_shapes_broadcast_threshold\": " << shapes(build, false, 3, unused);
    js << ", \"output_shapes_hidden_rank2\": " << shapes(build, true, 2, unused);

    js << ", \"formats_float\": " << formats(build, DataType::kFLOAT, TensorFormat::kLINEAR);
    js << ", \"formats_half\": " << formats(build, DataType::kHALF, TensorFormat::kLINEAR);
    js << ", \"formats_chw4\": " << formats(build, DataType::kFLOAT, TensorFormat::kCHW4);

    using KernelWorkspace = size_t (*)(int64_t, int64_t);
    auto kernelWorkspace = reinterpret_cast<KernelWorkspace>(dlsym(lib, "adapler_token_drop_workspace_size"));
    js << ", \"workspace\": [";
    int64_t const problems[3][3] = {{1, 128, 384}, {8, 512, 384}, {32, 77, 768}};
    for (int32_t i = 0; i < 3; ++i)
    {
        auto const& p = problems[i];
        js << (i ? ", " : "") << "{\"B\": " << p[0] << ", \"T\": " << p[1] << ", \"bytes\": "
           << workspace(build, p[0], p[1], p[2]) << ", \"kernel_bytes\": "
           << (kernelWorkspace ? std::to_string(kernelWorkspace(p[0], p[1])) : "null") << "}";
    }
    js << "]";

    DynamicPluginTensorDesc din[4] = {};
    DynamicPluginTensorDesc dout[4] = {};
    js << ", \"configure_rc\": [" << build->configurePlugin(din, 4, dout, 4) << ", "
       << build->configurePlugin(din, 3, dout, 4) << "]";
    PluginFieldCollection const* ser = runtime->getFieldsToSerialize();
    js << ", \"serialized_fields\": " << (ser ? ser->nbFields : -1);
    std::unique_ptr<IPluginV3> clone(plugin->clone());
    std::unique_ptr<IPluginV3> attached(runtime->attachToContext(nullptr));
    js << ", \"clone_ok\": " << (clone ? "true" : "false") << ", \"attach_ok\": " << (attached ? "true" : "false");

    std::vector<std::string> logged;
    for (auto const& m : finder.logger.messages) { logged.push_back(quote(m)); }
    js << ", \"logged\": " << join(logged) << "}";
    std::printf("%s\n", js.str().c_str());
    return 0;
}
