//! Tencent Cloud regions a TencentDB for MySQL instance or a KMS key can live in.
//! An id outside this list is reported as an input error before anything is sent.

pub const KNOWN_REGIONS: &[&str] = &[
    "ap-bangkok",
    "ap-beijing",
    "ap-beijing-fsi",
    "ap-chengdu",
    "ap-chongqing",
    "ap-guangzhou",
    "ap-guangzhou-open",
    "ap-hangzhou-ec",
    "ap-hongkong",
    "ap-jakarta",
    "ap-jinan-ec",
    "ap-mumbai",
    "ap-nanjing",
    "ap-qingyuan",
    "ap-seoul",
    "ap-shanghai",
    "ap-shanghai-adc",
    "ap-shanghai-fsi",
    "ap-shenzhen",
    "ap-shenzhen-fsi",
    "ap-shijiazhuang-ec",
    "ap-singapore",
    "ap-taipei",
    "ap-tianjin",
    "ap-tokyo",
    "ap-wuhan-ec",
    "ap-xibei-ec",
    "eu-frankfurt",
    "eu-moscow",
    "me-saudi-arabia",
    "na-ashburn",
    "na-siliconvalley",
    "na-toronto",
    "sa-saopaulo",
];

pub fn is_known_region(r: &str) -> bool {
    KNOWN_REGIONS.contains(&r)
}
