// Command machover prints what a Mach-O binary declares about the macOS it
// needs: its CPU and the LC_BUILD_VERSION (or older LC_VERSION_MIN_MACOSX)
// load command's platform, minimum OS version and SDK version, the way
// `otool -l` shows them, so a release check needs no macOS tools here.
//
//	go run ./tests/release/machover <binary>
//	darwin x86_64 minos 12.0 sdk 12.0
//
// Exit status 1 if the file is not Mach-O or declares no version.
package main

import (
	"debug/macho"
	"fmt"
	"os"
)

const (
	lcVersionMinMacOSX = 0x24
	lcBuildVersion     = 0x32
	platformMacOS      = 1
)

// version decodes Mach-O's packed xxxx.yy.zz form.
func version(v uint32) string {
	s := fmt.Sprintf("%d.%d", v>>16, (v>>8)&0xff)
	if v&0xff != 0 {
		s += fmt.Sprintf(".%d", v&0xff)
	}
	return s
}

func describe(path string) (string, error) {
	f, err := macho.Open(path)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	cpu := map[macho.Cpu]string{macho.CpuAmd64: "x86_64", macho.CpuArm64: "arm64"}[f.Cpu]
	if cpu == "" {
		cpu = f.Cpu.String()
	}
	for _, l := range f.Loads {
		raw := l.Raw()
		if len(raw) < 16 {
			continue
		}
		cmd := f.ByteOrder.Uint32(raw[0:4])
		switch cmd {
		case lcBuildVersion: // cmd, cmdsize, platform, minos, sdk, ntools
			if len(raw) < 24 {
				return "", fmt.Errorf("%s: short LC_BUILD_VERSION", path)
			}
			platform := f.ByteOrder.Uint32(raw[8:12])
			name := "darwin"
			if platform != platformMacOS {
				name = fmt.Sprintf("platform-%d", platform)
			}
			return fmt.Sprintf("%s %s minos %s sdk %s", name, cpu,
				version(f.ByteOrder.Uint32(raw[12:16])), version(f.ByteOrder.Uint32(raw[16:20]))), nil
		case lcVersionMinMacOSX: // cmd, cmdsize, version, sdk
			return fmt.Sprintf("darwin %s minos %s sdk %s", cpu,
				version(f.ByteOrder.Uint32(raw[8:12])), version(f.ByteOrder.Uint32(raw[12:16]))), nil
		}
	}
	return "", fmt.Errorf("%s: no LC_BUILD_VERSION or LC_VERSION_MIN_MACOSX", path)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: machover <mach-o binary>")
		os.Exit(2)
	}
	s, err := describe(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "machover:", err)
		os.Exit(1)
	}
	fmt.Println(s)
}
