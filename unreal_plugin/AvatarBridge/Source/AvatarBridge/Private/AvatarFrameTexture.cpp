#include "AvatarFrameTexture.h"

#include "Engine/Texture2D.h"
#include "RenderUtils.h"

UTexture2D* AvatarFrameTexture::Ensure(UTexture2D* Existing, int32 Width, int32 Height)
{
	if (Existing && Existing->GetSizeX() == Width && Existing->GetSizeY() == Height)
	{
		return Existing;
	}
	UTexture2D* Texture = UTexture2D::CreateTransient(Width, Height, PF_R8G8B8A8);
	Texture->SRGB = true;
	Texture->Filter = TF_Bilinear;
	Texture->UpdateResource();
	return Texture;
}

void AvatarFrameTexture::Upload(UTexture2D* Texture, avatar_bridge::Frame&& Frame)
{
	if (!Texture || Frame.rgba.size() != size_t(Frame.width) * Frame.height * 4)
	{
		return;
	}
	// Both freed by the render thread once it has copied the region.
	auto* Pixels = new std::vector<uint8_t>(std::move(Frame.rgba));
	auto* Region = new FUpdateTextureRegion2D(0, 0, 0, 0, Frame.width, Frame.height);
	Texture->UpdateTextureRegions(0, 1, Region, Frame.width * 4, 4, Pixels->data(),
		[Pixels](uint8*, const FUpdateTextureRegion2D* Done)
		{
			delete Pixels;
			delete Done;
		});
}
